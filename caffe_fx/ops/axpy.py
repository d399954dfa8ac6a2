"""Axpy, SENet's fused channel scale and residual add (hujie-frank/SENet).

Mirrors the fork's src/caffe/layers/axpy_layer.cpp: top = a * x + y, with a (N, C) or
(N, C, 1, 1) scaling each channel of x (N, C, ...) and y shaped like x.  Its Backward_cpu
is the derivative of that forward (a's diff sum(td * x) over the spatial axes, x's a * td,
y's td), so autograd differentiates it as it is.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

from ._shape_check import wrong_shape


def check_axpy_shapes(a: List[int], x: List[int], y: List[int]) -> Tuple[str, str]:
    """("", "") when AxpyLayer::Reshape accepts the three bottoms, else (what is wrong,
    the CHECK).  Beyond the fork's CHECKs, a's count must be N * C (a 3-D a of N x C x k
    passes them): the fork's forward reads only N * C of its values and its backward's
    gemv writes a's diff as if it held N * C * spatial."""
    if len(a) < 2 or len(x) < 2:
        return ("the scale bottom[0] of shape " + str(a) + " and x bottom[1] of shape "
                + str(x) + " need 2 or more axes", "Blob::shape(1): axis out of range")
    if a[0] != x[0]:
        return ("bottom[0] (the scale) of shape " + str(a) + " has " + str(a[0])
                + " items, bottom[1] (x) of shape " + str(x) + " has " + str(x[0]),
                "CHECK_EQ(bottom[0]->shape(0), bottom[1]->shape(0))")
    if a[1] != x[1]:
        return ("bottom[0] (the scale) of shape " + str(a) + " has " + str(a[1])
                + " channels, bottom[1] (x) of shape " + str(x) + " has " + str(x[1]),
                "CHECK_EQ(bottom[0]->shape(1), bottom[1]->shape(1))")
    spatial = 1
    for d in a[2:]:
        spatial *= d
    if spatial != 1:
        return ("bottom[0] (the scale) of shape " + str(a) + " must hold one value per "
                "item and channel (N x C or N x C x 1 x 1)",
                "CHECK_EQ(bottom[0]->shape(2), 1); CHECK_EQ(bottom[0]->shape(3), 1)")
    if x != y:
        return ("bottom[1] (x) of shape " + str(x) + " and bottom[2] (y) of shape "
                + str(y) + " differ", "CHECK(bottom[1]->shape() == bottom[2]->shape())")
    return "", ""


@torch.fx.wrap
def axpy(a: Tensor, x: Tensor, y: Tensor, layer: str = "") -> Tensor:
    """a * x + y (axpy_layer.cpp's Forward_cpu: top = y, then caffe_axpy per channel)."""
    a_shape: List[int] = [int(d) for d in a.shape]
    x_shape: List[int] = [int(d) for d in x.shape]
    y_shape: List[int] = [int(d) for d in y.shape]
    detail, check = check_axpy_shapes(a_shape, x_shape, y_shape)
    if detail != "":
        wrong_shape(layer, "Axpy", detail, check)
    scale = a.reshape(x_shape[:2] + [1] * (len(x_shape) - 2))
    return scale * x + y
