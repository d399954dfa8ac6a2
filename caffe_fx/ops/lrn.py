"""Caffe's WITHIN_CHANNEL local response normalization (lowering/layers/lrn.py).

Mirrors src/caffe/layers/lrn_layer.cpp, which builds it from internal layers:
Power(x^2) -> Pooling(AVE, size x size, pad (size-1)/2) -> Power(-beta, alpha, 1) -> x *.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.fx.wrap
def lrn_within_channel(x: Tensor, size: int, alpha: float, beta: float) -> Tensor:
    """x (1 + alpha/size^2 sum_{size x size window} x^2)^-beta, zero padded; k is unused.
    The windows never overhang H + pad, so Caffe's AVE divisor is always size^2."""
    pad = (size - 1) // 2
    mean = F.avg_pool2d(x * x, size, 1, pad, False, True)
    return x * torch.pow(mean * alpha + 1.0, -beta)


@torch.fx.wrap
def lrn_across_channels_inplace(x: Tensor, size: int, alpha: float, beta: float,
                                k: float) -> Tensor:
    """What Caffe's CPU ACROSS_CHANNELS LRN computes in place (top == bottom):
    CrossChannelForward_cpu writes scale^-beta into the top, then multiplies it by the
    bottom, which is now that same buffer, so the result is scale^(-2 beta)."""
    pad = (size - 1) // 2
    sq = F.pad((x * x).unsqueeze(1), [0, 0, 0, 0, pad, pad])
    scale = F.avg_pool3d(sq, [size, 1, 1], 1).squeeze(1) * alpha + k
    y = torch.pow(scale, -beta)
    return y * y
