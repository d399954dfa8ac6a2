"""Softmax (softmax_param): over `axis`, every other axis independent.

Mirrors src/caffe/layers/softmax_layer.cpp (max-subtracted exp, then divide).
"""
from __future__ import annotations

import torch

from ...errors import ShapeError
from ..registry import Call, LayerView, register


def canonical_axis(view: LayerView, axis: int, ndim: int, field: str) -> int:
    """Blob::CanonicalAxisIndex: -ndim <= axis < ndim, negatives count from the end."""
    if not -ndim <= axis < ndim:
        raise view.error(f"{field} = {axis} is out of range for a {ndim}-D bottom; "
                         f"allowed: {-ndim} to {ndim - 1}", ShapeError)
    return axis + ndim if axis < 0 else axis


@register("Softmax", params=("softmax_param",), bottoms=1, tops=1)
def softmax(view: LayerView) -> Call:
    ndim = len(view.input_shapes[0])
    axis = canonical_axis(view, view.param.softmax_param.axis, ndim, "softmax_param.axis")
    return Call(torch.softmax, dict(dim=axis))
