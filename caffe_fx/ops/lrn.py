"""Caffe's LRN where torch has no equivalent (lowering/layers/lrn.py): WITHIN_CHANNEL, and
either kind in place, forward and Backward_cpu.

Mirrors src/caffe/layers/lrn_layer.cpp.  WITHIN_CHANNEL is built there from internal
layers: Split -> Power(x^2) -> Pooling(AVE, size x size, pad (size-1)/2) -> Power(-beta,
alpha, 1) -> Eltwise PROD with x.  In place, the overwritten bottom is what backward reads.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .caffe_grad import caffe_grad, current_top, keep_top


def _channel_sums(v: Tensor, size: int) -> Tensor:
    """Sums over the `size` channels centred on each channel, zero padded (odd size)."""
    pad = (size - 1) // 2
    padded = F.pad(v.unsqueeze(1), [0, 0, 0, 0, pad, pad])
    return F.avg_pool3d(padded, [size, 1, 1], 1).squeeze(1) * float(size)


def _across_scale(x: Tensor, size: int, alpha: float, k: float) -> Tensor:
    """CrossChannelForward_cpu's scale_: k + alpha / size * (window sum of x^2)."""
    pad = (size - 1) // 2
    sq = F.pad((x * x).unsqueeze(1), [0, 0, 0, 0, pad, pad])
    return F.avg_pool3d(sq, [size, 1, 1], 1).squeeze(1) * alpha + k


def _window_sums(v: Tensor, size: int) -> Tensor:
    """Sums over the `size` channels centred on each channel, zero padded (odd size), by
    adding shifted channel slices: no padded copy, and `v`'s memory layout (NHWC after
    an NHWC convolution) is kept."""
    pad = (size - 1) // 2
    c = v.shape[1]
    s = v.clone()
    for i in range(1, min(pad, c - 1) + 1):
        s[:, i:].add_(v[:, : c - i])
        s[:, : c - i].add_(v[:, i:])
    return s


def _across(x: Tensor, size: int, alpha: float, beta: float,
            k: float) -> Tuple[Tensor, Tensor, Tensor]:
    """(top, scale, scale^-beta) of CrossChannelForward_cpu."""
    scale = _window_sums(x * x, size).mul_(alpha / size).add_(k)
    if beta == 0.75:  # every published LRN: s^-1/2 s^-1/4, within 3e-7 of pow, in half its time
        power = torch.rsqrt(scale).mul_(torch.rsqrt(torch.sqrt(scale)))
    else:
        power = torch.pow(scale, -beta)
    return x * power, scale, power


class CaffeLRNAcross(torch.autograd.Function):
    """ACROSS_CHANNELS LRN, not in place: CrossChannelForward_cpu's scale = k + alpha /
    size * (window sum of x^2) and top = x scale^-beta, and CrossChannelBackward_cpu's
    dx = dy scale^-beta - 2 alpha beta / size * x * sums(dy top / scale).

    The same values as torch's F.local_response_norm and its autograd (to rounding), in
    about half the passes, in the bottom's layout: CaffeNet b32's two LRNs 3.1 -> 1.4 s of a
    step under load (fwd + bwd, interleaved)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, size: int, alpha: float, beta: float,
                k: float) -> Tensor:
        y, scale, power = _across(x, size, alpha, beta, k)
        ctx.size, ctx.ratio = size, 2.0 * alpha * beta / size
        ctx.save_for_backward(x, y, scale, power)
        return y

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor) -> Tuple[Tensor, None, None, None, None]:
        x, y, scale, power = ctx.saved_tensors
        sums = _window_sums(dy * y / scale, ctx.size)
        dx = torch.addcmul(dy * power, x, sums, value=-ctx.ratio)
        return dx, None, None, None, None


@torch.fx.wrap
def lrn_across_channels(x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
    """ACROSS_CHANNELS LRN (top != bottom): x (k + alpha / size sum_{size channels}
    x^2)^-beta, zero padded, as F.local_response_norm; CaffeLRNAcross where autograd
    differentiates it."""
    if not torch.jit.is_scripting():
        if x.dim() == 4 and not torch.compiler.is_exporting():
            if caffe_grad(x):
                return CaffeLRNAcross.apply(x, size, alpha, beta, k)
            # Without autograd the same sums, not local_response_norm's padded
            # avg_pool3d: GoogLeNet b1's two LRNs 11 -> 2 ms.
            return _across(x, size, alpha, beta, k)[0]
    return torch.nn.functional.local_response_norm(x, size, alpha, beta, k)


def _within_power(x: Tensor, size: int, alpha: float, beta: float) -> Tuple[Tensor, Tensor]:
    """(1 + alpha mean, (1 + alpha mean)^-beta), the mean over the size x size window."""
    pad = (size - 1) // 2
    scale = F.avg_pool2d(x * x, size, 1, pad, False, True) * alpha + 1.0
    return scale, torch.pow(scale, -beta)


class CaffeLRNInPlace(torch.autograd.Function):
    """LRN in place (top == bottom) with lrn_layer.cpp's Backward_cpu reading the
    overwritten data, `y` below (the blob's data when backward runs).

    ACROSS_CHANNELS (CrossChannelBackward_cpu): its first caffe_mul(top_diff, bottom_diff,
    bottom_diff) multiplies scale^-beta by itself, as the two diffs are one array, so the
    incoming diff is lost: dx = s^-2b - 2 alpha beta / size * y * sums(s^-2b y / s).
    WITHIN_CHANNEL: the internal PROD's backward reads the split blob that shares the
    overwritten data, and so does the square's: dx = p dy + 2 y pool'(-alpha beta p / s y dy)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, across: bool, size: int, alpha: float, beta: float,
                k: float) -> Tensor:
        y = _lrn_in_place(x, across, size, alpha, beta, k)
        ctx.across, ctx.size, ctx.alpha, ctx.beta, ctx.k = across, size, alpha, beta, k
        ctx.save_for_backward(x, y)
        keep_top(ctx, x, y, True)
        return y

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor) -> Tuple[Tensor, None, None, None, None, None]:
        x, saved_y = ctx.saved_tensors
        y = current_top(ctx, saved_y)
        size, alpha, beta = ctx.size, ctx.alpha, ctx.beta
        if ctx.across:
            scale = _across_scale(x, size, alpha, ctx.k)
            d = torch.pow(scale, -beta)
            d = d * d
            ratio = _channel_sums(d * y / scale, size)
            dx = d - (2.0 * alpha * beta / size) * y * ratio
        else:
            pad = (size - 1) // 2
            scale, power = _within_power(x, size, alpha, beta)
            g_mean = (-beta * alpha) * power / scale * (y * dy)  # Power's general case
            # AVE pooling's backward (stride 1, symmetric windows) is the same pooling.
            g_sq = F.avg_pool2d(g_mean, size, 1, pad, False, True)
            dx = power * dy + 2.0 * y * g_sq
        return dx, None, None, None, None, None


def _lrn_in_place(x: Tensor, across: bool, size: int, alpha: float, beta: float,
                  k: float) -> Tensor:
    if across:
        # CrossChannelForward_cpu writes scale^-beta into the top, then multiplies it by
        # the bottom, which is now that same buffer: the result is scale^(-2 beta).
        y = torch.pow(_across_scale(x, size, alpha, k), -beta)
        return y * y
    _, power = _within_power(x, size, alpha, beta)
    return x * power


@torch.fx.wrap
def lrn_within_channel(x: Tensor, size: int, alpha: float, beta: float) -> Tensor:
    """x (1 + alpha/size^2 sum_{size x size window} x^2)^-beta, zero padded; k is unused.
    The windows never overhang H + pad, so Caffe's AVE divisor is always size^2."""
    _, power = _within_power(x, size, alpha, beta)
    return x * power


@torch.fx.wrap
def lrn_within_channel_inplace(x: Tensor, size: int, alpha: float, beta: float) -> Tensor:
    """WITHIN_CHANNEL LRN in place: the same values, Caffe's in-place backward."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return CaffeLRNInPlace.apply(x, False, size, alpha, beta, 1.0)
    return _lrn_in_place(x, False, size, alpha, beta, 1.0)


@torch.fx.wrap
def lrn_across_channels_inplace(x: Tensor, size: int, alpha: float, beta: float,
                                k: float) -> Tensor:
    """What Caffe's CPU ACROSS_CHANNELS LRN computes in place (top == bottom):
    scale^(-2 beta), and its backward on that overwritten output."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return CaffeLRNInPlace.apply(x, True, size, alpha, beta, k)
    return _lrn_in_place(x, True, size, alpha, beta, k)
