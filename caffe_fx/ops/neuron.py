"""Caffe-exact elementwise functionals for the neuron layers (lowering/layers/neuron.py).

Each follows the CPU forward of src/caffe/layers/<name>_layer.cpp step by step (the same
float32 operations in the same order), where torch has no function that does exactly that.
"""
from __future__ import annotations

import torch
from torch import Tensor


@torch.fx.wrap
def sigmoid(x: Tensor) -> Tensor:
    """Caffe's sigmoid, 0.5 * tanh(0.5 x) + 0.5 (sigmoid_layer.cpp), not 1 / (1 + e^-x)."""
    return 0.5 * torch.tanh(0.5 * x) + 0.5


@torch.fx.wrap
def swish(x: Tensor, beta: float) -> Tensor:
    """x * sigmoid(beta x), the sigmoid being Caffe's tanh form (swish_layer.cpp)."""
    return x * (0.5 * torch.tanh(0.5 * (x * beta)) + 0.5)


@torch.fx.wrap
def power(x: Tensor, power: float, scale: float, shift: float) -> Tensor:
    """(shift + scale x)^power, as power_layer.cpp: scale, then shift, then pow, each
    step skipped at its neutral value.  The constant cases are lowered to full_like."""
    y = x
    if scale != 1.0:
        y = y * scale
    if shift != 0.0:
        y = y + shift
    if power != 1.0:
        y = torch.pow(y, power)
    return y


@torch.fx.wrap
def scaled_exp(x: Tensor, inner_scale: float, outer_scale: float) -> Tensor:
    """exp(inner_scale x) * outer_scale (exp_layer.cpp; the layer folds base, scale and
    shift into these two float32 constants)."""
    y = torch.exp(x * inner_scale) if inner_scale != 1.0 else torch.exp(x)
    if outer_scale != 1.0:
        y = y * outer_scale
    return y


@torch.fx.wrap
def scaled_log(x: Tensor, scale: float, shift: float, base_scale: float) -> Tensor:
    """log(scale x + shift) * base_scale, base_scale = 1 / ln(base) (log_layer.cpp)."""
    y = x
    if scale != 1.0:
        y = y * scale
    if shift != 0.0:
        y = y + shift
    y = torch.log(y)
    if base_scale != 1.0:
        y = y * base_scale
    return y


@torch.fx.wrap
def threshold(x: Tensor, threshold: float) -> Tensor:
    """1 where x > threshold (strictly), else 0 (threshold_layer.cpp)."""
    return (x > threshold).to(x.dtype)
