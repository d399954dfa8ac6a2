"""ArgMax (argmax_param): the top_k indices (or values) along an axis or per sample.

Mirrors src/caffe/layers/argmax_layer.cpp.  Ties resolve to the larger index (Caffe sorts
(value, index) pairs with std::greater), unlike torch.argmax; see ops.misc.argmax for the
layout without `axis`.
"""
from __future__ import annotations

import math

from ...errors import ShapeError
from ...ops import misc as CM
from ..registry import Call, LayerView, register
from .softmax import canonical_axis


@register("ArgMax", params=("argmax_param",), bottoms=1, tops=1)
def argmax(view: LayerView) -> Call:
    p = view.param.argmax_param
    shape = view.input_shapes[0]
    if p.top_k < 1:
        raise view.fail("argmax_param.top_k", p.top_k, "at least 1")
    axis = None
    if p.HasField("axis"):
        axis = canonical_axis(view, p.axis, len(shape), "argmax_param.axis")
        size = shape[axis]
    else:
        size = math.prod(shape[1:])
    if p.top_k > size:
        raise view.error(f"argmax_param.top_k = {p.top_k} exceeds the {size} values it "
                         "chooses from", ShapeError)
    return Call(CM.argmax, dict(top_k=p.top_k, out_max_val=p.out_max_val, axis=axis))
