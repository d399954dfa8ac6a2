"""Caffe-exact elementwise functionals for the neuron layers (lowering/layers/neuron.py).

Each follows the CPU forward of src/caffe/layers/<name>_layer.cpp step by step (the same
float32 operations in the same order), and when autograd differentiates it, that file's
Backward_cpu: the formula Caffe uses, on the blob data as Caffe reads it (ops/caffe_grad.py).
`top_is_bottom=True` is Caffe's in-place layer, whose top overwrote its bottom.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .caffe_grad import caffe_grad, current_top, keep_top


def _sigmoid(x: Tensor) -> Tensor:
    return 0.5 * torch.tanh(0.5 * x) + 0.5


def _swish(x: Tensor, beta: float) -> Tensor:
    return x * _sigmoid(x * beta)


def _elu(x: Tensor, alpha: float) -> Tensor:
    return torch.nn.functional.elu(x, alpha)


def _leaky_relu(x: Tensor, negative_slope: float) -> Tensor:
    return torch.nn.functional.leaky_relu(x, negative_slope)


def _bnll(x: Tensor) -> Tensor:
    # x + log(1 + e^-x) for x > 0, else log(1 + e^x): softplus, in both branches.
    return torch.nn.functional.softplus(x)


def _clip(x: Tensor, lo: float, hi: float) -> Tensor:
    return torch.clamp(x, lo, hi)


def _power(x: Tensor, power: float, scale: float, shift: float) -> Tensor:
    y = x
    if scale != 1.0:
        y = y * scale
    if shift != 0.0:
        y = y + shift
    if power != 1.0:
        y = torch.pow(y, power)
    return y


def _scaled_exp(x: Tensor, inner_scale: float, outer_scale: float) -> Tensor:
    y = torch.exp(x * inner_scale) if inner_scale != 1.0 else torch.exp(x)
    if outer_scale != 1.0:
        y = y * outer_scale
    return y


def _scaled_log(x: Tensor, scale: float, shift: float, base_scale: float) -> Tensor:
    y = x
    if scale != 1.0:
        y = y * scale
    if shift != 0.0:
        y = y + shift
    y = torch.log(y)
    if base_scale != 1.0:
        y = y * base_scale
    return y


# Backward_cpu of each layer: (top diff, bottom data, top data, the input forward saw,
# params, in place) -> bottom diff.  Bottom and top data are the blobs' data at backward
# time; in place both are the one blob's.  The comparisons are Caffe's (a NaN matches
# none), so they are spelled out rather than written as torch.where.
def _relu_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                   inplace: bool) -> Tensor:
    return dy * ((x > 0).to(dy.dtype) + p[0] * (x <= 0).to(dy.dtype))


def _sigmoid_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                      inplace: bool) -> Tensor:
    return dy * y * (1.0 - y)


def _tanh_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                   inplace: bool) -> Tensor:
    return dy * (1.0 - y * y)


def _elu_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                  inplace: bool) -> Tensor:
    return dy * ((x > 0).to(dy.dtype) + (p[0] + y) * (x <= 0).to(dy.dtype))


def _bnll_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                   inplace: bool) -> Tensor:
    e = torch.exp(torch.clamp(x, max=50.0))  # kBNLL_THRESHOLD
    return dy * e / (e + 1.0)


def _clip_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                   inplace: bool) -> Tensor:
    # In place the data read is the clipped output, always inside [min, max]: every
    # element passes its diff, the clipped ones included.
    return dy * ((x >= p[0]) & (x <= p[1])).to(dy.dtype)


def _swish_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                    inplace: bool) -> Tensor:
    # The internal Sigmoid layer's output is its own blob, computed from the input as
    # forward saw it; the top data may have been overwritten since.
    beta = p[0]
    s = _sigmoid(x0 * beta)
    return dy * (beta * y + s * (1.0 - beta * y))


def _exp_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                  inplace: bool) -> Tensor:
    dx = y * dy
    return dx * p[0] if p[0] != 1.0 else dx


def _times_diff(factor: Tensor, dy: Tensor, inplace: bool) -> Tensor:
    """power_layer.cpp and log_layer.cpp build the factor in the bottom diff, then
    caffe_mul(top_diff, bottom_diff, bottom_diff): in place the top diff is that same
    array, so the factor is squared and the incoming diff is lost."""
    return factor * factor if inplace else dy * factor


def _power_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                    inplace: bool) -> Tensor:
    power, scale, shift = p
    diff_scale = power * scale
    if power == 1.0:
        factor = torch.full_like(x, diff_scale)
    elif power == 2.0:  # 2 scale (shift + scale x), as diff_scale scale x + diff_scale shift
        factor = (diff_scale * scale) * x
        if shift != 0.0:
            factor = factor + diff_scale * shift
    elif shift == 0.0:  # power y / x (NaN where x = 0, as in Caffe)
        factor = (y / x) * power
    else:  # diff_scale y / (shift + scale x)
        t = x * scale if scale != 1.0 else x
        if shift != 0.0:
            t = t + shift
        factor = y / t
        if diff_scale != 1.0:
            factor = factor * diff_scale
    return _times_diff(factor, dy, inplace)


def _log_backward(dy: Tensor, x: Tensor, y: Tensor, x0: Tensor, p: Tuple[float, ...],
                  inplace: bool) -> Tensor:
    scale, shift, base_scale = p
    t = x * scale if scale != 1.0 else x
    if shift != 0.0:
        t = t + shift
    factor = torch.pow(t, -1.0)
    num_scale = scale * base_scale  # backward_num_scale_ = input_scale_ / log(base)
    if num_scale != 1.0:
        factor = factor * num_scale
    return _times_diff(factor, dy, inplace)


_Backward = Callable[[Tensor, Tensor, Tensor, Tensor, Tuple[float, ...], bool], Tensor]
_LAYERS: Dict[str, Tuple[Callable[..., Tensor], _Backward]] = {
    "ReLU": (_leaky_relu, _relu_backward),
    "Sigmoid": (_sigmoid, _sigmoid_backward),
    "TanH": (torch.tanh, _tanh_backward),
    "ELU": (_elu, _elu_backward),
    "BNLL": (_bnll, _bnll_backward),
    "Clip": (_clip, _clip_backward),
    "Swish": (_swish, _swish_backward),
    "Exp": (_scaled_exp, _exp_backward),
    "Power": (_power, _power_backward),
    "Log": (_scaled_log, _log_backward),
}


class CaffeNeuron(torch.autograd.Function):
    """One neuron layer: its forward, and its Backward_cpu on the blobs' current data."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, layer: str, params: Tuple[float, ...],
                top_is_bottom: bool) -> Tensor:
        y = _LAYERS[layer][0](x, *params)
        ctx.layer, ctx.params, ctx.top_is_bottom = layer, params, top_is_bottom
        ctx.save_for_backward(x, y)
        keep_top(ctx, x, y, top_is_bottom)
        return y

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor) -> Tuple[Optional[Tensor], None, None, None]:
        x0, saved_y = ctx.saved_tensors
        y = current_top(ctx, saved_y)
        x = y if ctx.top_is_bottom else x0
        dx = _LAYERS[ctx.layer][1](dy, x, y, x0, ctx.params, ctx.top_is_bottom)
        return dx, None, None, None


def _caffe_neuron(x: Tensor, layer: str, params: Tuple[float, ...],
                  top_is_bottom: bool) -> Tensor:
    return CaffeNeuron.apply(x, layer, params, top_is_bottom)


@torch.fx.wrap
def sigmoid(x: Tensor, top_is_bottom: bool = False) -> Tensor:
    """Caffe's sigmoid, 0.5 * tanh(0.5 x) + 0.5 (sigmoid_layer.cpp), not 1 / (1 + e^-x)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "Sigmoid", (), top_is_bottom)
    return _sigmoid(x)


@torch.fx.wrap
def tanh(x: Tensor, top_is_bottom: bool = False) -> Tensor:
    """torch.tanh, differentiated as tanh_layer.cpp: 1 - y^2 on the top's current data."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "TanH", (), top_is_bottom)
    return torch.tanh(x)


@torch.fx.wrap
def elu(x: Tensor, alpha: float, top_is_bottom: bool = False) -> Tensor:
    """F.elu, differentiated as elu_layer.cpp: 1 where the bottom > 0, else alpha + y."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "ELU", (alpha,), top_is_bottom)
    return _elu(x, alpha)


@torch.fx.wrap
def leaky_relu(x: Tensor, negative_slope: float, top_is_bottom: bool = False) -> Tensor:
    """max(x, 0) + negative_slope min(x, 0) (relu_layer.cpp); its backward tests the
    bottom data, in place the output (with a negative slope, negatives turn positive)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "ReLU", (negative_slope,), top_is_bottom)
    return _leaky_relu(x, negative_slope)


@torch.fx.wrap
def bnll(x: Tensor, top_is_bottom: bool = False) -> Tensor:
    """BNLL (bnll_layer.cpp) as softplus; backward e^m / (e^m + 1), m = min(bottom, 50)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "BNLL", (), top_is_bottom)
    return _bnll(x)


@torch.fx.wrap
def clip(x: Tensor, min: float, max: float, top_is_bottom: bool = False) -> Tensor:
    """max(min, min(x, max)) (clip_layer.cpp); backward passes where min <= bottom <= max."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "Clip", (min, max), top_is_bottom)
    return _clip(x, min, max)


@torch.fx.wrap
def swish(x: Tensor, beta: float, top_is_bottom: bool = False) -> Tensor:
    """x * sigmoid(beta x), the sigmoid being Caffe's tanh form (swish_layer.cpp)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "Swish", (beta,), top_is_bottom)
    return _swish(x, beta)


@torch.fx.wrap
def power(x: Tensor, power: float, scale: float, shift: float,
          top_is_bottom: bool = False) -> Tensor:
    """(shift + scale x)^power, as power_layer.cpp: scale, then shift, then pow, each
    step skipped at its neutral value.  The constant cases are lowered to full_like."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "Power", (power, scale, shift), top_is_bottom)
    return _power(x, power, scale, shift)


@torch.fx.wrap
def scaled_exp(x: Tensor, inner_scale: float, outer_scale: float,
               top_is_bottom: bool = False) -> Tensor:
    """exp(inner_scale x) * outer_scale (exp_layer.cpp; the layer folds base, scale and
    shift into these two float32 constants)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "Exp", (inner_scale, outer_scale), top_is_bottom)
    return _scaled_exp(x, inner_scale, outer_scale)


@torch.fx.wrap
def scaled_log(x: Tensor, scale: float, shift: float, base_scale: float,
               top_is_bottom: bool = False) -> Tensor:
    """log(scale x + shift) * base_scale, base_scale = 1 / ln(base) (log_layer.cpp)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return _caffe_neuron(x, "Log", (scale, shift, base_scale), top_is_bottom)
    return _scaled_log(x, scale, shift, base_scale)


@torch.fx.wrap
def threshold(x: Tensor, threshold: float) -> Tensor:
    """1 where x > threshold (strictly), else 0 (threshold_layer.cpp)."""
    return (x > threshold).to(x.dtype)
