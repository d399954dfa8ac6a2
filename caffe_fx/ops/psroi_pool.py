"""R-FCN's PSROIPooling as the custom op `caffe_fx::psroi_pool` (CPU and CUDA).

Ops stage, called by lowering/layers/roi_pooling.py.  Mirrors ppengtang/caffe
src/caffe/layers/psroi_pooling_layer.cu (PSROIPoolingForward, PSROIPoolingBackwardAtomic;
the fork has no CPU code, so no oracle runs it):
- roi corners round(x1) * spatial_scale and (round(x2) + 1) * spatial_scale in Dtype (C's
  round, half away from zero), sizes at least 0.1, bin = size / group_size;
- bin (ph, pw) covers [floor(ph * bin_h + start_h), ceil((ph + 1) * bin_h + start_h)),
  clipped to the map; nvcc contracts `a * b + c` into one fma (its default -fmad=true), so
  the edge is rounded once: in float32 it is computed exactly in float64 and rounded to
  float32 once (in float64 as a plain multiply-add);
- top (r, ctop, ph, pw) averages channel (ctop * group_size + ph) * group_size + pw of the
  roi's image over the bin; an empty bin gives 0;
- backward adds top_diff / bin_area to every element of the bin; the rois get no diff.

Sums come from integral images in float64 (the fork sums the bin in Dtype), so a float32
top can differ from the fork's by float32 rounding.  CUDA tensors run kernels/psroi_pool.cu
through CuPy (ops/_cuda_kernels.py).
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from . import _cuda_kernels
from .roi_pool import c_round, check_rois

_KIND = "PSROIPooling"


def _who(layer: str) -> str:
    return f"layer '{layer}' ({_KIND}): " if layer else f"{_KIND}: "


def _edge(p: Tensor, bin_size: Tensor, start: Tensor, up: bool) -> Tensor:
    """floor / ceil of fma(p, bin_size, start) in the dtype of bin_size."""
    if bin_size.dtype == torch.float32:
        exact = p.double()[None, :] * bin_size.double()[:, None] + start.double()[:, None]
        v = exact.float()
    else:
        v = p[None, :] * bin_size[:, None] + start[:, None]
    return (torch.ceil(v) if up else torch.floor(v)).to(torch.int64)


def psroi_bins(rois: Tensor, dtype: torch.dtype, group_size: int, spatial_scale: float,
               height: int, width: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(hstart, hend, wstart, wend), each R x group_size int64, clipped to the map, as
    PSROIPoolingForward computes them."""
    r = rois.to(dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype, device=rois.device)
    rounded = c_round(r[:, 1:5])
    start_w, start_h = rounded[:, 0] * scale, rounded[:, 1] * scale
    end_w, end_h = (rounded[:, 2] + 1) * scale, (rounded[:, 3] + 1) * scale
    # max(x, 0.1) in double, stored in Dtype: max with Dtype(0.1) (no float lies between).
    least = torch.tensor(0.1, dtype=dtype, device=rois.device)
    groups = torch.tensor(float(group_size), dtype=dtype, device=rois.device)
    p = torch.arange(group_size, dtype=dtype, device=rois.device)

    def axis(start: Tensor, end: Tensor, size: int) -> Tuple[Tensor, Tensor]:
        bin_size = torch.maximum(end - start, least) / groups
        lo = _edge(p, bin_size, start, up=False)
        hi = _edge(p + 1, bin_size, start, up=True)
        return lo.clamp(0, size), hi.clamp(0, size)

    hs, he = axis(start_h, end_h, height)
    ws, we = axis(start_w, end_w, width)
    return hs, he, ws, we


def _geometry(rois: Tensor, batch: Tensor, dtype: torch.dtype, output_dim: int,
              group_size: int, spatial_scale: float, channels: int, height: int, width: int
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per top element (R x output_dim x G x G): its bottom plane (b * C + c), the bin's
    clipped edges broadcast, and its area in Dtype (0 for an empty bin)."""
    g = group_size
    hs, he, ws, we = psroi_bins(rois, dtype, g, spatial_scale, height, width)
    ctop = torch.arange(output_dim).view(1, output_dim, 1, 1)
    gh = torch.arange(g).view(1, 1, g, 1)
    gw = torch.arange(g).view(1, 1, 1, g)
    plane = batch.view(-1, 1, 1, 1) * channels + (ctop * g + gh) * g + gw
    hs, he = hs.view(-1, 1, g, 1), he.view(-1, 1, g, 1)
    ws, we = ws.view(-1, 1, 1, g), we.view(-1, 1, 1, g)
    area = ((he - hs) * (we - ws)).clamp(min=0).to(dtype)  # empty bins: h or w extent <= 0
    empty = (he <= hs) | (we <= ws)
    return plane, hs, he, ws, we, area.masked_fill(empty, 0.0)


def _forward_cpu(features: Tensor, rois: Tensor, output_dim: int, group_size: int,
                 spatial_scale: float, layer: str) -> Tensor:
    n, c, h, w = features.shape
    batch = check_rois(rois, n, layer, _KIND)
    plane, hs, he, ws, we, area = _geometry(rois, batch, features.dtype, output_dim,
                                            group_size, spatial_scale, c, h, w)
    # Integral image, (N*C) x (H+1) x (W+1), in float64.
    s = torch.zeros((n * c, h + 1, w + 1), dtype=torch.float64)
    s[:, 1:, 1:] = features.reshape(n * c, h, w).double().cumsum(1).cumsum(2)
    flat = s.view(-1)
    base = plane * ((h + 1) * (w + 1))

    def at(hh: Tensor, ww: Tensor) -> Tensor:
        return flat[base + hh * (w + 1) + ww]

    total = at(he, we) - at(hs, we) - at(he, ws) + at(hs, ws)
    top = total.to(features.dtype) / area.clamp(min=1)
    return top.masked_fill(area == 0, 0.0)


def _backward_cpu(grad: Tensor, rois: Tensor, batch: int, channels: int, height: int,
                  width: int, output_dim: int, group_size: int, spatial_scale: float) -> Tensor:
    """PSROIPoolingBackwardAtomic: top_diff / bin_area (in Dtype) added over each bin, by
    a float64 difference image (four corner updates per bin, then two cumsums)."""
    index = rois[:, 0].to(torch.int64)
    plane, hs, he, ws, we, area = _geometry(rois, index, grad.dtype, output_dim, group_size,
                                            spatial_scale, channels, height, width)
    v = (grad / area.clamp(min=1)).masked_fill(area == 0, 0.0).double()
    d = torch.zeros(batch * channels * (height + 1) * (width + 1), dtype=torch.float64)
    base = plane * ((height + 1) * (width + 1))
    for hh, ww, sign in ((hs, ws, 1.0), (hs, we, -1.0), (he, ws, -1.0), (he, we, 1.0)):
        idx = (base + hh * (width + 1) + ww).expand(v.shape).reshape(-1)
        d.index_add_(0, idx, v.reshape(-1), alpha=sign)
    d = d.view(batch * channels, height + 1, width + 1).cumsum(1).cumsum(2)
    return d[:, :height, :width].to(grad.dtype).reshape(batch, channels, height, width)


# ---------------------------------------------------------------- the custom ops

def _check_args(features: Tensor, output_dim: int, group_size: int, layer: str) -> None:
    if features.dim() != 4:
        raise InputError(f"{_who(layer)}features of shape {list(features.shape)}; allowed: "
                         "N x C x H x W")
    if output_dim <= 0 or group_size <= 0:
        raise InputError(f"{_who(layer)}output_dim = {output_dim}, group_size = "
                         f"{group_size}; allowed: > 0")
    if features.shape[1] != output_dim * group_size * group_size:
        raise InputError(f"{_who(layer)}features of {features.shape[1]} channels; allowed: "
                         f"output_dim * group_size^2 = {output_dim * group_size ** 2}")


@torch.library.custom_op("caffe_fx::psroi_pool", mutates_args=())
def psroi_pool_op(features: Tensor, rois: Tensor, output_dim: int, group_size: int,
                  spatial_scale: float, layer: str = "") -> Tensor:
    """R-FCN's PSROIPooling top, R x output_dim x group_size x group_size."""
    _check_args(features, output_dim, group_size, layer)
    return _forward_cpu(features, rois, output_dim, group_size, spatial_scale, layer)


@psroi_pool_op.register_fake
def _(features: Tensor, rois: Tensor, output_dim: int, group_size: int, spatial_scale: float,
      layer: str = "") -> Tensor:
    _check_args(features, output_dim, group_size, layer)
    return features.new_empty((rois.shape[0], output_dim, group_size, group_size))


@torch.library.custom_op("caffe_fx::psroi_pool_backward", mutates_args=())
def psroi_pool_backward_op(grad: Tensor, rois: Tensor, batch: int, channels: int, height: int,
                           width: int, output_dim: int, group_size: int,
                           spatial_scale: float) -> Tensor:
    """The features' diff of caffe_fx::psroi_pool."""
    return _backward_cpu(grad, rois, batch, channels, height, width, output_dim, group_size,
                         spatial_scale)


@psroi_pool_backward_op.register_fake
def _(grad: Tensor, rois: Tensor, batch: int, channels: int, height: int, width: int,
      output_dim: int, group_size: int, spatial_scale: float) -> Tensor:
    return grad.new_empty((batch, channels, height, width))


def _setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tensor) -> None:
    features, rois, output_dim, group_size, spatial_scale = inputs[:5]
    ctx.save_for_backward(rois)
    ctx.shape = tuple(features.shape)
    ctx.args = (output_dim, group_size, spatial_scale)


def _backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
    (rois,) = ctx.saved_tensors
    n, c, h, w = ctx.shape
    diff = torch.ops.caffe_fx.psroi_pool_backward(grad, rois, n, c, h, w, *ctx.args)
    return diff, None, None, None, None, None


psroi_pool_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- CUDA (kernels/psroi_pool.cu)

_SUFFIX = {torch.float32: "float32", torch.float64: "float64"}


def _cuda_dtype(x: Tensor, layer: str) -> str:
    if x.dtype not in _SUFFIX:
        raise InputError(f"{_who(layer)}CUDA features of dtype {x.dtype}; allowed: float32, "
                         "float64")
    return _SUFFIX[x.dtype]


def _scalar(suffix: str, v: float) -> Any:
    return np.float32(v) if suffix == "float32" else np.float64(v)


def _psroi_pool_cuda(features: Tensor, rois: Tensor, output_dim: int, group_size: int,
                     spatial_scale: float, layer: str = "") -> Tensor:
    _check_args(features, output_dim, group_size, layer)
    suffix = _cuda_dtype(features, layer)
    n, c, h, w = features.shape
    check_rois(rois, n, layer, _KIND)
    x = features.contiguous()
    r = rois.to(x.dtype).contiguous()
    top = x.new_zeros((r.shape[0], output_dim, group_size, group_size))
    _cuda_kernels.launch("psroi_pool", f"psroi_pool_forward_{suffix}", top.numel(), (
        np.int32(top.numel()), x, _scalar(suffix, spatial_scale), np.int32(c), np.int32(h),
        np.int32(w), np.int32(group_size), r, np.int32(output_dim), top), x.device)
    return top


def _psroi_pool_backward_cuda(grad: Tensor, rois: Tensor, batch: int, channels: int,
                              height: int, width: int, output_dim: int, group_size: int,
                              spatial_scale: float) -> Tensor:
    suffix = _cuda_dtype(grad, "")
    g = grad.contiguous()
    out = g.new_zeros((batch, channels, height, width))
    r = rois.to(g.dtype).contiguous()
    _cuda_kernels.launch("psroi_pool", f"psroi_pool_backward_{suffix}", g.numel(), (
        np.int32(g.numel()), g, _scalar(suffix, spatial_scale), np.int32(channels),
        np.int32(height), np.int32(width), np.int32(group_size), r, np.int32(output_dim),
        out), g.device)
    return out


psroi_pool_op.register_kernel("cuda")(_psroi_pool_cuda)
psroi_pool_backward_op.register_kernel("cuda")(_psroi_pool_backward_cuda)


# ---------------------------------------------------------------- what generated code calls

@torch.fx.wrap
def psroi_pool(features: Tensor, rois: Tensor, output_dim: int, group_size: int,
               spatial_scale: float, layer: str = "") -> Tensor:
    """PSROIPooling's top; differentiable in `features` (the rois get no diff).  `layer`
    names the layer in errors."""
    if rois.dim() != 2:  # a legacy R x 5 x 1 x 1 blob
        rois = rois.reshape(rois.shape[0], 5)
    return torch.ops.caffe_fx.psroi_pool(features, rois, output_dim, group_size,
                                         spatial_scale, layer)
