"""Eltwise over any number of bottoms, in Caffe's order of operations.

Mirrors the CPU forward of src/caffe/layers/eltwise_layer.cpp: SUM accumulates
coeff_i * x_i into zero (caffe_axpy), PROD and MAX fold left to right.  Each takes the
bottoms as one list (a packed `Call`).
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor


@torch.fx.wrap
def eltwise_sum(xs: List[Tensor], coeff: List[float]) -> Tensor:
    y = xs[0] * coeff[0]
    for i in range(1, len(xs)):
        y = y + xs[i] * coeff[i]
    return y


@torch.fx.wrap
def eltwise_prod(xs: List[Tensor]) -> Tensor:
    y = xs[0] * xs[1]
    for i in range(2, len(xs)):
        y = y * xs[i]
    return y


@torch.fx.wrap
def eltwise_max(xs: List[Tensor]) -> Tensor:
    y = torch.maximum(xs[0], xs[1])
    for i in range(2, len(xs)):
        y = torch.maximum(y, xs[i])
    return y
