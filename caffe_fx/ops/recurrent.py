"""Caffe's LSTMUnit: one LSTM step, c, h from c_prev, the gate inputs and cont.

Ops stage, used by lowering/layers/recurrent.py (the LSTMUnit layer and every step of
the unrolled LSTM).  Mirrors src/caffe/layers/lstm_unit_layer.cpp: gates in Caffe's
order (i, f, o, g) along the last axis, f = 0 where cont = 0, else cont * sigmoid;
autograd runs its Backward_cpu, whose forget-gate diff is f (1 - f) with cont inside f
(the derivative only for cont in {0, 1}), and gives cont no diff.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .caffe_grad import caffe_grad


def _gates(x: Tensor, cont: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """i, f, o, g of lstm_unit_layer.cpp; cont (..., N) scales f of stream n."""
    hidden = x.shape[-1] // 4
    i = torch.sigmoid(x[..., :hidden])
    f = torch.sigmoid(x[..., hidden:2 * hidden])
    o = torch.sigmoid(x[..., 2 * hidden:3 * hidden])
    g = torch.tanh(x[..., 3 * hidden:])
    c3 = cont.unsqueeze(-1)
    # `(*cont == 0) ? 0 : *cont * sigmoid(...)`: a NaN gate input still gives 0 there.
    f = torch.where(c3 == 0, torch.zeros_like(f), c3 * f)
    return i, f, o, g


def _lstm_unit(c_prev: Tensor, x: Tensor, cont: Tensor) -> tuple[Tensor, Tensor]:
    i, f, o, g = _gates(x, cont)
    c = f * c_prev + i * g
    return c, o * torch.tanh(c)


class CaffeLSTMUnit(torch.autograd.Function):
    """LSTMUnitLayer::Forward_cpu and Backward_cpu (no diff for cont)."""

    @staticmethod
    def forward(ctx: Any, c_prev: Tensor, x: Tensor, cont: Tensor) -> tuple[Tensor, Tensor]:
        c, h = _lstm_unit(c_prev, x, cont)
        ctx.save_for_backward(c_prev, x, cont, c)
        return c, h

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dc: Tensor, dh: Tensor
                 ) -> tuple[Tensor | None, Tensor | None, None]:
        c_prev, x, cont, c = ctx.saved_tensors
        i, f, o, g = _gates(x, cont)
        tanh_c = torch.tanh(c)
        c_term = dc + dh * o * (1 - tanh_c * tanh_c)
        dc_prev = c_term * f if ctx.needs_input_grad[0] else None
        dx = None
        if ctx.needs_input_grad[1]:
            dx = torch.cat([c_term * g * i * (1 - i), c_term * c_prev * f * (1 - f),
                            dh * tanh_c * o * (1 - o), c_term * i * (1 - g * g)], dim=-1)
        return dc_prev, dx, None


@torch.fx.wrap
def lstm_unit(c_prev: Tensor, x: Tensor, cont: Tensor) -> tuple[Tensor, Tensor]:
    """LSTMUnit (lstm_unit_layer.cpp): c_prev (1, N, H), gate inputs x (1, N, 4H) in the
    order i, f, o, g, cont (1, N) -> (c, h), each (1, N, H):
    c = f * c_prev + i * g, h = o * tanh(c), with f = cont * sigmoid(x_f) (0 where cont
    is 0).  Differentiated as Caffe's Backward_cpu; cont gets no gradient."""
    if not torch.jit.is_scripting():  # noqa: SIM102  (TorchScript skips this block whole)
        if caffe_grad(c_prev, x):
            return CaffeLSTMUnit.apply(c_prev, x, cont.detach())
    return _lstm_unit(c_prev, x, cont.detach())
