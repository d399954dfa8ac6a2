"""Axpy (hujie-frank/SENet): top = a * x + y, SENet's channel scale fused with its
residual add, on ops/axpy.py.

Mirrors the fork's src/caffe/layers/axpy_layer.cpp: three bottoms (a: N x C or
N x C x 1 x 1, x: N x C x ..., y shaped like x) and one top shaped like x; Reshape's
CHECKs are refused at compile time and again on each forward.  Not in place: a top on
bottom[0] would be reshaped like x before the scale is read.
"""
from __future__ import annotations

from ...errors import ShapeError
from ...ops import axpy as ops
from ..registry import Call, LayerView, register


@register("Axpy", bottoms=3, tops=1, inplace_ok=False, fork="hujie-frank/SENet")
def axpy(view: LayerView) -> Call:
    a, x, y = (list(s) for s in view.input_shapes)
    detail, check = ops.check_axpy_shapes(a, x, y)
    if detail:
        raise view.error(f"{detail}; Caffe: \"{check}\"", ShapeError)
    return Call(ops.axpy, dict(layer=view.name))
