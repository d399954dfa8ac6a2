"""Convolution -> BatchNorm -> Scale -> Eltwise SUM -> ReLU as one op, where
lowering/fuse.py finds the chain (ResNet's and MobileNet's every convolution, and the sum
that closes each residual block) and nothing else reads the blobs in between - in Caffe
those layers run in place, so the chain's end is the only value its blob ever shows.

Without autograd on the CPU it is one oneDNN convolution with the BatchNorm and Scale
folded into its weight and the sum and ReLU inside it (ops/onednn.py), which changes rounding
(a deliberate difference, README; within 1e-4 of Caffe on the benchmark nets).  Otherwise
- autograd, TorchScript, torch.compile/export, CUDA - it computes each layer as its own
module does (batch_norm_global, affine below; BatchNorm and ScaleBias call them too).
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from . import onednn
from ._shape_check import dims, wrong_shape
from .eltwise import eltwise_add
from .shape import along_axis


def batch_norm_global(x: Tensor, mean: Tensor, variance: Tensor, scale_factor: Tensor,
                      eps: float) -> Tensor:
    """BatchNorm with global statistics (batch_norm_layer.cpp): the running sums divided
    by scale_factor (0 if it is 0), then (x - mean) / sqrt(var + eps)."""
    s = scale_factor
    f = torch.where(s == 0, torch.zeros_like(s), 1.0 / s)
    n = x.dim()
    if n >= 2:
        # One fused pass: (x - mean) * (1 / sqrt(var + eps)); within an ulp of Caffe's
        # subtract-then-divide.
        return torch.nn.functional.batch_norm(x, mean * f, variance * f, None, None, False,
                                              0.0, eps)
    return (x - mean * f) / torch.sqrt(variance * f + eps)


def affine(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], axis: int) -> Tensor:
    """Scale / Bias with learned blobs: x * weight + bias, each broadcast from `axis`."""
    n = x.dim()
    if weight is not None and bias is not None:
        # x * w + b in one pass (BatchNorm + Scale pairs in every ResNet).
        return torch.addcmul(along_axis(bias, axis, n), x, along_axis(weight, axis, n))
    if weight is not None:
        x = x * along_axis(weight, axis, n)
    if bias is not None:
        x = x + along_axis(bias, axis, n)
    return x


@torch.fx.wrap
def conv_bn_scale_relu(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                       mean: Optional[Tensor], variance: Optional[Tensor],
                       scale_factor: Optional[Tensor], gamma: Optional[Tensor],
                       beta: Optional[Tensor], stride: List[int], pad: List[int],
                       dilation: List[int], groups: int, eps: float, relu: bool,
                       layers: str, add: Optional[Tensor] = None, add_bottom: int = 1,
                       add_in_place: bool = False) -> Tensor:
    """The layers named in `layers` (comma-separated, Caffe's order): a 2-D Convolution,
    then BatchNorm (global statistics; `mean` None when absent), Scale (`gamma`/`beta`,
    per channel), a two-bottom Eltwise SUM with `add` (its bottom `add_bottom`; the layer
    before the ReLU in `layers`) and ReLU (`relu`), any of the last four absent.
    `add_in_place`: nothing reads `add` afterwards, so oneDNN may sum into it."""
    if x.dim() != 4 or x.shape[1] != weight.shape[1] * groups:
        wrong_shape(layers.split(",")[0], "Convolution", "bottom of shape " + dims(x)
                    + "; the weight takes 4-D bottoms with "
                    + str(weight.shape[1] * groups) + " channels at axis 1",
                    "Input size incompatible with convolution kernel")
    if not torch.jit.is_scripting():
        if onednn.applies(x, [weight, bias, gamma, beta, mean, variance, scale_factor]) and (
                add is None or onednn.adds(add, x, weight, stride, pad, dilation)):
            return onednn.conv2d(x, weight, bias, stride, pad, dilation, groups, relu,
                                 fold=(mean, variance, scale_factor, gamma, beta, eps),
                                 add=add, add_in_place=add_in_place)
    y = onednn.conv2d_nhwc(x, weight, bias, stride, pad, dilation, groups)
    if mean is not None and variance is not None and scale_factor is not None:
        y = batch_norm_global(y, mean, variance, scale_factor, eps)
    if gamma is not None or beta is not None:
        y = affine(y, gamma, beta, 1)
    if add is not None:
        names = layers.split(",")
        eltwise = names[-2] if relu else names[-1]
        y = eltwise_add(add, y, eltwise) if add_bottom == 0 else eltwise_add(y, add, eltwise)
    if relu:
        y = torch.relu(y)
    return y
