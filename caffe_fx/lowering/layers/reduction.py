"""Reduction (reduction_param): SUM, ASUM, SUMSQ or MEAN over every axis from `axis` on.

Mirrors src/caffe/layers/reduction_layer.cpp.  The top has the bottom's leading axes
only, so `axis: 0` gives a 0-axis scalar.
"""
from __future__ import annotations

from ...ops import misc as CM
from ...proto import caffe_pb2
from ..registry import Call, LayerView, register
from .softmax import canonical_axis

_R = caffe_pb2.ReductionParameter


@register("Reduction", params=("reduction_param",), bottoms=1, tops=1)
def reduction(view: LayerView) -> Call:
    p = view.param.reduction_param
    axis = canonical_axis(view, p.axis, len(view.input_shapes[0]), "reduction_param.axis")
    return Call(CM.reduction, dict(operation=_R.ReductionOp.Name(p.operation), axis=axis,
                                   coeff=p.coeff))
