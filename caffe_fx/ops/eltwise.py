"""Eltwise over any number of bottoms, in Caffe's order of operations.

Mirrors the CPU forward of src/caffe/layers/eltwise_layer.cpp: SUM accumulates
coeff_i * x_i into zero (caffe_axpy), PROD and MAX fold left to right; MAX's backward
routes each diff through Caffe's argmax mask.  Each takes the bottoms as one list (a
packed `Call`).
"""
from __future__ import annotations

from typing import Any, List, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._shape_check import dims, wrong_shape
from .caffe_grad import caffe_grad


def _same_shapes(xs: List[Tensor], layer: str) -> None:
    # EltwiseLayer::Reshape: CHECK(bottom[0]->shape() == bottom[i]->shape()).
    for i in range(1, len(xs)):
        if xs[i].shape != xs[0].shape:
            wrong_shape(layer, "Eltwise", "bottom[" + str(i) + "] of shape " + dims(xs[i])
                        + " does not match bottom[0] of shape " + dims(xs[0])
                        + " (all bottoms must have the same shape, no broadcasting)",
                        "bottom[0]->shape() == bottom[i]->shape()")


@torch.fx.wrap
def eltwise_add(a: Tensor, b: Tensor, layer: str = "") -> Tensor:
    """Two bottoms, SUM without coefficients: torch.add after Caffe's shape check."""
    if a.shape != b.shape:
        _same_shapes([a, b], layer)
    return torch.add(a, b)


@torch.fx.wrap
def eltwise_mul(a: Tensor, b: Tensor, layer: str = "") -> Tensor:
    """Two bottoms, PROD: torch.mul after Caffe's shape check."""
    if a.shape != b.shape:
        _same_shapes([a, b], layer)
    return torch.mul(a, b)


@torch.fx.wrap
def eltwise_sum(xs: List[Tensor], coeff: List[float], layer: str = "") -> Tensor:
    _same_shapes(xs, layer)
    y = xs[0] * coeff[0]
    for i in range(1, len(xs)):
        y = y + xs[i] * coeff[i]
    return y


@torch.fx.wrap
def eltwise_prod(xs: List[Tensor], layer: str = "") -> Tensor:
    _same_shapes(xs, layer)
    y = xs[0] * xs[1]
    for i in range(2, len(xs)):
        y = y * xs[i]
    return y


def _eltwise_max(xs: List[Tensor]) -> Tensor:
    y = torch.maximum(xs[0], xs[1])
    for i in range(2, len(xs)):
        y = torch.maximum(y, xs[i])
    return y


def _max_mask(xs: List[Tensor]) -> Tensor:
    """Forward_cpu's mask: bottoms 0 and 1 compare with `a > b`, so a tie goes to bottom
    1; a later bottom takes over only where strictly greater, so a tie stays put."""
    first = xs[0] > xs[1]
    top = torch.where(first, xs[0], xs[1])
    mask = torch.where(first, 0, 1)
    for i in range(2, len(xs)):
        take = xs[i] > top
        top = torch.where(take, xs[i], top)
        mask = torch.where(take, i, mask)
    return mask


class CaffeEltwiseMax(torch.autograd.Function):
    """Eltwise MAX whose backward gives each element's diff to the bottom in Caffe's mask
    (where torch.maximum splits it between tied bottoms)."""

    @staticmethod
    def forward(ctx: Any, *xs: Tensor) -> Tensor:
        ctx.save_for_backward(_max_mask(list(xs)))
        return _eltwise_max(list(xs))

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor) -> Tuple[Tensor, ...]:
        (mask,) = ctx.saved_tensors
        zero = torch.zeros_like(dy)
        return tuple(torch.where(mask == i, dy, zero) for i in range(len(ctx.needs_input_grad)))


@torch.fx.wrap
def eltwise_max(xs: List[Tensor], layer: str = "") -> Tensor:
    _same_shapes(xs, layer)
    if not torch.jit.is_scripting():
        if caffe_grad(*xs):
            return CaffeEltwiseMax.apply(*xs)
    return _eltwise_max(xs)
