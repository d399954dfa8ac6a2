"""BatchNorm (batch_norm_param): normalisation only, no affine part.

Mirrors src/caffe/layers/batch_norm_layer.cpp.  Blobs, in Caffe's order, are buffers
`mean` and `variance` (running *sums*, shape (C)) and `scale_factor` (shape (1)); with
global statistics both sums are divided by scale_factor (0 if it is 0).  With batch
statistics (TRAIN by default) the biased batch variance normalises, and every forward
updates the three buffers as Caffe does, even outside a solver.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from ...errors import ShapeError
from ...ops.fused import batch_norm_global
from ..registry import CaffeModule, LayerView, register


class BatchNorm(CaffeModule):
    caffe_blobs = ("mean", "variance", "scale_factor")

    def __init__(self, channels: int, use_global_stats: bool, eps: float,
                 moving_average_fraction: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.empty(channels))
        self.register_buffer("variance", torch.empty(channels))
        self.register_buffer("scale_factor", torch.empty(1))
        self.fillers = [None, None, None]  # Caffe zero-initialises all three
        self.use_global_stats = use_global_stats
        self.eps = eps
        self.moving_average_fraction = moving_average_fraction

    def forward(self, x: Tensor) -> Tensor:
        n = x.dim()
        if self.use_global_stats:
            return batch_norm_global(x, self.mean, self.variance, self.scale_factor, self.eps)
        dims: List[int] = [0] + list(range(2, n))
        mean = x.mean(dims, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dims, keepdim=True)
        with torch.no_grad():
            m = x.numel() // max(self.mean.numel(), 1)
            correction = float(m) / (m - 1) if m > 1 else 1.0
            maf = self.moving_average_fraction
            self.scale_factor.mul_(maf).add_(1.0)
            self.mean.mul_(maf).add_(mean.detach().reshape(-1))
            self.variance.mul_(maf).add_(var.detach().reshape(-1) * correction)
        return centered / torch.sqrt(var + self.eps)

    def extra_repr(self) -> str:
        return (f"channels={self.mean.shape[0]}, use_global_stats={self.use_global_stats}, "
                f"eps={self.eps}")


@register("BatchNorm", params=("batch_norm_param",), bottoms=1, tops=1)
def batch_norm(view: LayerView) -> BatchNorm:
    p = view.param.batch_norm_param
    shape = view.input_shapes[0]
    if not shape:
        raise view.error("the bottom needs at least one axis", ShapeError)
    for i, spec in enumerate(view.param.param):
        if spec.lr_mult != 0:
            raise view.fail(f"param[{i}].lr_mult", spec.lr_mult,
                            "0 (Cannot configure batch normalization statistics as layer "
                            "parameters)")
    use_global = p.use_global_stats if p.HasField("use_global_stats") else not view.is_train
    channels = shape[1] if len(shape) > 1 else 1
    return BatchNorm(channels, use_global, p.eps, p.moving_average_fraction)
