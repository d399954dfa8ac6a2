"""Neuron layers: one bottom, one top of the same shape, in place allowed.

Mirrors src/caffe/layers/{relu,prelu,elu,sigmoid,tanh,absval,bnll,power,exp,log,threshold,
clip,swish,dropout}_layer.cpp (CAFFE_REFERENCE.md 1.2), backward included (ops/neuron.py,
told when top == bottom, as Caffe's backward then reads the overwritten data).  Deliberate
differences: TRAIN Dropout (and SegNet's TEST Dropout with sample_weights_test) draws
torch's mask, not Caffe's (its 1 / (1 - p) scale), and Clip
propagates a NaN input where Caffe's std::max(min, std::min(x, max)) returns min.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops import neuron as N
from ...ops import rcnn as R
from ...proto import caffe_pb2
from ..registry import IDENTITY, Call, CaffeModule, LayerView, Lowered, register

_f32 = np.float32


def _in_place(view: LayerView) -> dict[str, bool]:
    """The `top_is_bottom` argument of ops/neuron.py, given only when it is true."""
    return {"top_is_bottom": True} if view.tops[0] == view.bottoms[0] else {}


@register("ReLU", params=("relu_param",), bottoms=1, tops=1)
def relu(view: LayerView) -> Call:
    slope = view.param.relu_param.negative_slope
    if slope == 0:
        # In place too: the output is > 0 exactly where the input is, so testing the
        # overwritten data gives the same mask (unless a later in-place layer changes
        # signs; see README's deliberate differences).
        return Call(torch.relu)
    if view.tops[0] == view.bottoms[0]:
        return Call(N.leaky_relu, dict(negative_slope=slope, top_is_bottom=True))
    return Call(F.leaky_relu, dict(negative_slope=slope))


class PReLU(CaffeModule):
    """max(x, 0) + a_c min(x, 0) over channel axis 1; one shared slope when the blob is a
    0-axis scalar (channel_shared)."""

    caffe_blobs = ("weight",)

    def __init__(self, channels: int | None, filler: caffe_pb2.FillerParameter) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(() if channels is None else (channels,)))
        self.fillers = [filler]

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"weight={list(self.weight.shape)}"


@register("PReLU", params=("prelu_param",), bottoms=1, tops=1)
def prelu(view: LayerView) -> PReLU:
    p = view.param.prelu_param
    shape = view.input_shapes[0]
    # Caffe reads the channel count with Blob::channels(), which needs 2 to 4 axes.
    if not 2 <= len(shape) <= 4:
        raise view.fail("bottom shape", list(shape), "2-D to 4-D bottoms (channels on axis 1)")
    if p.HasField("filler"):
        filler = p.filler
    else:  # prelu_layer.cpp: no filler given means constant 0.25
        filler = caffe_pb2.FillerParameter(type="constant", value=0.25)
    return PReLU(None if p.channel_shared else shape[1], filler)


@register("ELU", params=("elu_param",), bottoms=1, tops=1)
def elu(view: LayerView) -> Call:
    return Call(N.elu, dict(alpha=view.param.elu_param.alpha, **_in_place(view)))


@register("Sigmoid", params=("sigmoid_param",), bottoms=1, tops=1)
def sigmoid(view: LayerView) -> Call:
    return Call(N.sigmoid, _in_place(view))


@register("TanH", params=("tanh_param",), bottoms=1, tops=1)
def tanh(view: LayerView) -> Call:
    return Call(N.tanh, _in_place(view))


# absval_layer.cpp CHECKs that top != bottom.
@register("AbsVal", bottoms=1, tops=1, inplace_ok=False)
def abs_val(view: LayerView) -> Call:
    return Call(torch.abs)


@register("BNLL", bottoms=1, tops=1)
def bnll(view: LayerView) -> Call:
    # x + log(1 + e^-x) for x > 0, else log(1 + e^x): softplus, in both branches.  Its
    # backward reads the bottom, which only an in-place BNLL has overwritten.
    if view.tops[0] == view.bottoms[0]:
        return Call(N.bnll, dict(top_is_bottom=True))
    return Call(F.softplus)


@register("Power", params=("power_param",), bottoms=1, tops=1)
def power(view: LayerView) -> Call:
    p = view.param.power_param
    if _f32(p.power) * _f32(p.scale) == 0:
        # power_layer.cpp writes a constant without reading the bottom.
        value = 1.0 if p.power == 0 else float(np.power(_f32(p.shift), _f32(p.power)))
        return Call(torch.full_like, dict(fill_value=value))
    return Call(N.power, dict(power=p.power, scale=p.scale, shift=p.shift,
                              **_in_place(view)))


def _log_base(view: LayerView, field: str, base: float) -> float:
    """ln(base) in float32 as exp_layer.cpp/log_layer.cpp compute it; base -1 means e."""
    if base == -1:
        return 1.0
    if not base > 0 or not math.isfinite(base):
        raise view.fail(field, base, "-1 (base e) or a finite positive number")
    return float(np.log(_f32(base)))


@register("Exp", params=("exp_param",), bottoms=1, tops=1)
def exp(view: LayerView) -> Call:
    p = view.param.exp_param
    log_base = _log_base(view, "exp_param.base", p.base)
    inner = float(_f32(log_base) * _f32(p.scale))
    if p.shift == 0:
        outer = 1.0
    elif p.base != -1:
        outer = float(np.power(_f32(p.base), _f32(p.shift)))
    else:
        outer = float(np.exp(_f32(p.shift)))
    return Call(N.scaled_exp, dict(inner_scale=inner, outer_scale=outer, **_in_place(view)))


@register("Log", params=("log_param",), bottoms=1, tops=1)
def log(view: LayerView) -> Call:
    p = view.param.log_param
    log_base = _log_base(view, "log_param.base", p.base)
    with np.errstate(divide="ignore"):  # base 1: Caffe's scale is inf, so is ours
        base_scale = 1.0 if p.base == -1 else float(_f32(1) / _f32(log_base))
    return Call(N.scaled_log, dict(scale=p.scale, shift=p.shift, base_scale=base_scale,
                                   **_in_place(view)))


@register("Threshold", params=("threshold_param",), bottoms=1, tops=1)
def threshold(view: LayerView) -> Call:
    return Call(N.threshold, dict(threshold=view.param.threshold_param.threshold))


@register("Clip", params=("clip_param",), bottoms=1, tops=1)
def clip(view: LayerView) -> Call:
    p = view.param.clip_param
    for name in ("min", "max"):
        if not p.HasField(name):
            raise view.fail(f"clip_param.{name}", "unset", "a value (the field is required)")
    if p.min > p.max:
        # std::max(min, std::min(x, max)) is min everywhere; torch.clamp would give max.
        return Call(torch.full_like, dict(fill_value=p.min))
    if view.tops[0] == view.bottoms[0]:  # backward reads the clipped data
        return Call(N.clip, dict(min=p.min, max=p.max, top_is_bottom=True))
    return Call(torch.clamp, dict(min=p.min, max=p.max))


@register("Swish", params=("swish_param",), bottoms=1, tops=1)
def swish(view: LayerView) -> Call:
    return Call(N.swish, dict(beta=view.param.swish_param.beta, **_in_place(view)))


@register("Dropout", params=("dropout_param", "dropout_param.scale_train",
                             "dropout_param.sample_weights_test"), bottoms=1, tops=1)
def dropout(view: LayerView) -> Lowered:
    p = view.param.dropout_param
    ratio = p.dropout_ratio
    if not 0 <= ratio < 1:
        raise view.fail("dropout_param.dropout_ratio", ratio, "0 <= ratio < 1")
    if p.sample_weights_test:
        # Bayesian SegNet's Monte Carlo dropout (alexgkendall/caffe-segnet dropout_layer.cpp):
        # TEST draws a mask too, x * mask / (1 - ratio), and backward uses that mask.
        if not p.scale_train:
            raise view.fail("dropout_param.scale_train", "false",
                            "leave it unset with sample_weights_test: true (two forks' "
                            "fields: scale_train is the R-CNN forks', sample_weights_test "
                            "SegNet's)")
        return Call(F.dropout, dict(p=ratio, training=True))
    if not view.param.dropout_param.scale_train:
        # The R-CNN forks' scale_train: false (rbgirshick/caffe-fast-rcnn faster-rcnn,
        # ppengtang/caffe dropout_layer.cpp): TRAIN keeps x unscaled, TEST scales by
        # 1 / scale_, with scale_ = 1 / (1 - ratio) rounded to float, then 1 / scale_ too.
        if view.is_train:
            return Call(R.dropout_unscaled, dict(ratio=ratio))
        factor = float(_f32(1.0 / float(_f32(1.0 / (1.0 - float(_f32(ratio)))))))
        return IDENTITY if factor == 1.0 else Call(R.dropout_test_scale, dict(factor=factor))
    if not view.is_train:
        return IDENTITY
    return Call(F.dropout, dict(p=ratio, training=True))
