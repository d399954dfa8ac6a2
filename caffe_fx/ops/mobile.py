"""Caffe-exact functionals for the mobile nets' fork layers: ReLU6 and ShuffleChannel.

ReLU6 mirrors chuanqi305/ssd's src/caffe/layers/relu6_layer.cpp (the MobileNet-SSD
author's fork): min(max(x, 0), 6); its Backward_cpu passes the diff where the bottom data
is strictly inside (0, 6), so 0 at exactly 0 and 6 (torch.clamp's derivative passes it
there) and at NaN.  In place the bottom data it reads is the top (ops/caffe_grad.py).
ShuffleChannel mirrors farmingyard/ShuffleNet's shuffle_channel_layer.cpp: channel
i * (C / group) + j goes to j * group + i; its backward copies the diff back through the
inverse, which is what autograd gives for the permutation.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._shape_check import dims, legacy_shape, wrong_shape
from .caffe_grad import caffe_grad, current_top, keep_top


class CaffeReLU6(torch.autograd.Function):
    """ReLU6 with relu6_layer.cpp's Backward_cpu on the bottom blob's current data."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, top_is_bottom: bool) -> Tensor:
        y = torch.clamp(x, 0.0, 6.0)
        ctx.top_is_bottom = top_is_bottom
        # In place the bottom is the top's blob (keep_top follows later writers to it).
        ctx.save_for_backward(y if top_is_bottom else x)
        keep_top(ctx, x, y, top_is_bottom)
        return y

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor) -> Tuple[Optional[Tensor], None]:
        (saved,) = ctx.saved_tensors
        x = current_top(ctx, saved) if ctx.top_is_bottom else saved
        return dy * ((x > 0) & (x < 6)).to(dy.dtype), None


@torch.fx.wrap
def relu6(x: Tensor, top_is_bottom: bool = False) -> Tensor:
    """min(max(x, 0), 6), differentiated as the fork's ReLU6 (see the module docstring)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return CaffeReLU6.apply(x, top_is_bottom)
    return torch.clamp(x, 0.0, 6.0)


@torch.fx.wrap
def shuffle_channel(x: Tensor, group: int, layer: str = "") -> Tensor:
    """ShuffleChannel's top: (N, C, H, W) by the legacy accessors (a 2-D bottom gives
    N x C x 1 x 1, as the fork's Reshape does), channels regrouped as the module says."""
    if x.dim() < 2 or x.dim() > 4:
        wrong_shape(layer, "ShuffleChannel", "bottom of shape " + dims(x)
                    + "; allowed: 2 to 4 axes", "Cannot use legacy accessors on Blobs "
                    "with > 4 axes. / Blob::shape(1): axis out of range")
    shape = legacy_shape([int(d) for d in x.shape])
    n, c = shape[0], shape[1]
    if c % group != 0:
        wrong_shape(layer, "ShuffleChannel", "bottom of shape " + dims(x) + " has "
                    + str(c) + " channels, not a multiple of group " + str(group),
                    "Wrong group size.")
    y = x.reshape([n, group, c // group, shape[2] * shape[3]]).transpose(1, 2)
    return y.reshape(shape)
