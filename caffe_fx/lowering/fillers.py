"""Caffe's weight fillers, used when compile() gets no caffemodel.

Lowering stage helper: fills a CaffeModule's blobs from their FillerParameter.  Mirrors
include/caffe/filler.hpp (fan_in = count / shape[0], fan_out = count / shape[1]).  Random
fillers draw from torch's generator, so their values are not Caffe's.
"""
from __future__ import annotations

import math

import torch

from ..errors import UnsupportedFieldError
from ..proto import caffe_pb2

_NORM = caffe_pb2.FillerParameter


def _fans(t: torch.Tensor) -> tuple[float, float]:
    count = t.numel()
    fan_in = count / t.shape[0] if t.dim() >= 1 and t.shape[0] else count
    fan_out = count / t.shape[1] if t.dim() > 1 and t.shape[1] else count
    return fan_in, fan_out


def _n(t: torch.Tensor, f: caffe_pb2.FillerParameter) -> float:
    fan_in, fan_out = _fans(t)
    if f.variance_norm == _NORM.FAN_OUT:
        return fan_out
    if f.variance_norm == _NORM.AVERAGE:
        return (fan_in + fan_out) / 2
    return fan_in


@torch.no_grad()
def fill(t: torch.Tensor, f: caffe_pb2.FillerParameter | None, where: str) -> None:
    if f is None:
        t.zero_()
        return
    kind = f.type
    if f.sparse != -1 and kind != "gaussian":
        raise UnsupportedFieldError(f"{where}: filler sparse = {f.sparse} is only allowed "
                                    "for type gaussian")
    if kind == "constant":
        t.fill_(f.value)
    elif kind == "uniform":
        t.uniform_(f.min, f.max)
    elif kind == "gaussian":
        t.normal_(f.mean, f.std)
        if f.sparse >= 0:
            keep = f.sparse / t.shape[0] if t.dim() else 1.0
            t.mul_(torch.bernoulli(torch.full_like(t, min(keep, 1.0))))
    elif kind == "positive_unitball":
        t.uniform_(0, 1)
        flat = t.view(t.shape[0], -1) if t.dim() else t.view(1, -1)
        flat.div_(flat.sum(dim=1, keepdim=True))
    elif kind == "xavier":
        a = math.sqrt(3.0 / _n(t, f))
        t.uniform_(-a, a)
    elif kind == "msra":
        t.normal_(0.0, math.sqrt(2.0 / _n(t, f)))
    elif kind == "bilinear":
        if t.dim() != 4 or t.shape[2] != t.shape[3]:
            raise UnsupportedFieldError(f"{where}: bilinear filler needs a 4-D blob with "
                                        f"square kernels; got shape {list(t.shape)}")
        k = t.shape[3]
        factor = math.ceil(k / 2)
        c = (2 * factor - 1 - factor % 2) / (2.0 * factor)
        r = torch.arange(k, dtype=torch.float64)
        w = 1 - (r / factor - c).abs()
        t.copy_((w[:, None] * w[None, :]).expand_as(t))
    else:
        raise UnsupportedFieldError(
            f"{where}: filler type = {kind!r} is not supported; supported: constant, "
            "uniform, gaussian, positive_unitball, xavier, msra, bilinear")
