"""Reduction (reduction_param): SUM, ASUM, SUMSQ or MEAN over every axis from `axis` on.

Mirrors src/caffe/layers/reduction_layer.cpp.  The top has the bottom's leading axes
only, so `axis: 0` gives a 0-axis scalar.  MEAN over an empty axis is refused at
compile: real Caffe 1.0 aborts on it (caffe-oracle: "Check failed: data_" in blob.cpp,
the empty bottom has no data), after ReductionLayer::Reshape divided coeff by 0.
"""
from __future__ import annotations

import math

from ...errors import ShapeError
from ...ops import misc as CM
from ...proto import caffe_pb2
from ..registry import Call, LayerView, register
from .softmax import canonical_axis

_R = caffe_pb2.ReductionParameter


@register("Reduction", params=("reduction_param",), bottoms=1, tops=1)
def reduction(view: LayerView) -> Call:
    p = view.param.reduction_param
    shape = view.input_shapes[0]
    axis = canonical_axis(view, p.axis, len(shape), "reduction_param.axis")
    if p.operation == _R.MEAN and math.prod(shape[axis:]) == 0:
        # Real Caffe aborts here (Check failed: data_, the bottom holds no data).
        raise view.error(f"operation MEAN over axes {list(range(axis, len(shape)))} of a "
                         f"bottom of shape {list(shape)} averages 0 elements (real Caffe "
                         "aborts: Check failed: data_); allowed: a bottom with at least "
                         "one element per output",
                         ShapeError)
    return Call(CM.reduction, dict(operation=_R.ReductionOp.Name(p.operation), axis=axis,
                                   coeff=p.coeff))
