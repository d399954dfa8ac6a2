"""Caffe-exact functionals used by the generated code (see ops/__init__.py).

Each mirrors one Caffe source file, named in its docstring.
"""
from __future__ import annotations

from typing import Any, List

import torch
import torch.nn.functional as F
from torch import Tensor

from ._shape_check import dims, wrong_shape
from .caffe_grad import transformed

# -FLT_MAX (ops/constants.py) is written inline below: TorchScript reads no globals.


class _GradInTopLayout(torch.autograd.Function):
    """The identity, whose backward hands the gradient on in the top's memory layout.

    torch's CPU pooling backward picks its kernel by the incoming gradient's layout: an
    NCHW gradient (InnerProduct's flatten gives one) for an NHWC pool (after an NHWC
    convolution) copies the whole zeroed bottom diff and the indices to NCHW and back,
    three copies of the bottom's size.  Converting the gradient, a quarter of that size
    for a 2x2 pool, is cheaper: LeNet b64's step 21.3 -> 16.1 ms (with convolution.py's
    NHWC view of one-channel bottoms).  Values are unchanged."""

    @staticmethod
    def forward(ctx: Any, y: Tensor) -> Tensor:
        ctx.nhwc = y.dim() == 4 and not y.is_contiguous() \
            and y.is_contiguous(memory_format=torch.channels_last)
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> Tensor:
        return dy.contiguous(memory_format=torch.channels_last if ctx.nhwc
                             else torch.contiguous_format)


def _grad_in_top_layout(y: Tensor) -> Tensor:
    """`y`, through _GradInTopLayout where eager autograd will differentiate it (never in
    TorchScript, under torch.compile, whose kernels choose layouts themselves, under
    torch.export or a torch.func transform)."""
    if not torch.jit.is_scripting():
        if y.requires_grad and torch.is_grad_enabled() and y.device.type == "cpu" \
                and not torch.compiler.is_compiling() \
                and not transformed():
            return _GradInTopLayout.apply(y)
    return y


def _window_fits(x: Tensor, kernel: List[int], stride: List[int], pad: List[int], ceil: bool,
                 layer: str) -> None:
    """PoolingLayer::Reshape on the forward's shape: a kernel beyond the padded bottom
    can give a top of negative size, which Blob::Reshape refuses, or of size 0, whose
    data Caffe's forward then finds missing.  (With ceil rounding and a stride > 1 it can
    also give one clipped window, which Caffe pools, and so do the ops.)"""
    if x.dim() != 4:
        wrong_shape(layer, "Pooling", "bottom of shape " + dims(x) + " is not 4-D "
                    "(N, C, H, W)", "4 == bottom[0]->num_axes()")
    for i in range(2):
        size = int(x.shape[2 + i])
        pooled = _caffe_pooled(size, kernel[i], stride[i], pad[i], ceil)
        if pooled < 1:
            wrong_shape(layer, "Pooling", "bottom of shape " + dims(x) + " is smaller than "
                        "the kernel " + str(kernel) + " with pad " + str(pad) + ": the top "
                        "would have " + str(pooled) + " rows",
                        "shape[i] >= 0" if pooled < 0 else "data_")


@torch.fx.wrap
def max_pool(x: Tensor, kernel: List[int], stride: List[int], pad: List[int], ceil: bool,
             layer: str = "") -> Tensor:
    """MAX Pooling where torch's max_pool2d agrees with Caffe (pooling_layer.cpp)."""
    _window_fits(x, kernel, stride, pad, ceil, layer)
    return _grad_in_top_layout(F.max_pool2d(x, kernel, stride, pad, 1, ceil))


@torch.fx.wrap
def ave_pool(x: Tensor, kernel: List[int], stride: List[int], pad: List[int], ceil: bool,
             layer: str = "") -> Tensor:
    """AVE Pooling where torch's avg_pool2d (padding counted) agrees with Caffe."""
    _window_fits(x, kernel, stride, pad, ceil, layer)
    return _grad_in_top_layout(F.avg_pool2d(x, kernel, stride, pad, ceil, True))


def _caffe_pooled(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    num = size + 2 * p - k
    out = (-(-num // s) if ceil else num // s) + 1
    if p > 0 and (out - 1) * s >= size + p:
        out -= 1
    return out


@torch.fx.wrap
def pool2d(x: Tensor, kernel: List[int], stride: List[int], pad: List[int], max_pool: bool,
           ceil: bool, layer: str = "") -> Tensor:
    """Caffe Pooling (MAX/AVE) where torch's pooling differs: pad > kernel/2, or pad = 0
    with kernel < stride, whose ceil rounding yields windows that start past the image.
    Pads explicitly, then pools without padding (src/caffe/layers/pooling_layer.cpp)."""
    _window_fits(x, kernel, stride, pad, ceil, layer)
    h, w = x.shape[-2], x.shape[-1]
    oh = _caffe_pooled(h, kernel[0], stride[0], pad[0], ceil)
    ow = _caffe_pooled(w, kernel[1], stride[1], pad[1], ceil)
    # Enough trailing padding that every Caffe window lies inside the padded plane.
    bottom = max((oh - 1) * stride[0] + kernel[0] - h - pad[0], pad[0])
    right = max((ow - 1) * stride[1] + kernel[1] - w - pad[1], pad[1])
    if max_pool:
        xp = F.pad(x, [pad[1], right, pad[0], bottom], value=-3.4028234663852886e38)  # -FLT_MAX; TorchScript cannot read globals
        y = F.max_pool2d(xp, kernel, stride, 0, 1, False)
        return y[..., :oh, :ow]
    xp = F.pad(x, [pad[1], right, pad[0], bottom], value=0.0)
    s = F.avg_pool2d(xp, kernel, stride, 0, False, True) * float(kernel[0] * kernel[1])
    s = s[..., :oh, :ow]
    # Caffe's divisor counts the window up to H + pad (not the extra trailing padding).
    hs = torch.arange(oh, device=x.device) * stride[0] - pad[0]
    ws = torch.arange(ow, device=x.device) * stride[1] - pad[1]
    dh = torch.clamp(hs + kernel[0], max=h + pad[0]) - hs
    dw = torch.clamp(ws + kernel[1], max=w + pad[1]) - ws
    return s / (dh[:, None] * dw[None, :]).to(s.dtype)


@torch.fx.wrap
def max_pool2d_with_mask(x: Tensor, kernel: List[int], stride: List[int], pad: List[int],
                         ceil: bool, layer: str = "") -> tuple[Tensor, Tensor]:
    """MAX Pooling with Caffe's second top: the argmax as a float flat index h*W + w."""
    _window_fits(x, kernel, stride, pad, ceil, layer)
    y, idx = F.max_pool2d(x, kernel, stride, pad, 1, ceil, True)
    return y, idx.to(x.dtype)
