"""Fast R-CNN's ROIPooling as the custom op `caffe_fx::roi_pool` (CPU and CUDA).

Ops stage, called by lowering/layers/roi_pooling.py.  Mirrors rbgirshick/caffe-fast-rcnn
src/caffe/layers/roi_pooling_layer.cpp (Forward_cpu, Backward_cpu; ppengtang/caffe has the
same file), which the oicr oracle runs:
- a roi is [batch_index, x1, y1, x2, y2]; its corners are C's round() (half away from zero)
  of coordinate * spatial_scale in Dtype, its end inclusive: roi_w = max(x2 - x1 + 1, 1);
- bin (ph, pw) covers [floor(ph * bin_h), ceil((ph + 1) * bin_h)) rows past the roi start,
  bin_h = roi_h / pooled_h in Dtype, clipped to the map; an empty bin gives 0, argmax -1;
- the max is the first one in row-major order that is > -FLT_MAX (Caffe's `>` against
  its -FLT_MAX start: NaN is never taken; a bin of -inf, NaN or -FLT_MAX only gives
  -FLT_MAX with argmax -1);
- backward adds each top diff to its argmax (over all rois), nothing to the rois.

The op returns (top, argmax), argmax an int32 index h * W + w within the (n, c) plane as
Caffe's max_idx_.  Its backward is the custom op `caffe_fx::roi_pool_backward`.  CUDA
tensors run kernels/roi_pool.cu through CuPy (ops/_cuda_kernels.py); its backward is the
CPU one's scatter by argmax (atomicAdd), not the fork's Backward_gpu, which drops the diff
of malformed rois (x2 < x1) that its own forward pooled.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from . import _cuda_kernels
from .constants import FLT_MAX

_MAX_GATHER = 1 << 23  # elements gathered per chunk of rois (the padded path)
_CHUNK = 1 << 20  # int64 keys gathered per chunk of rois (8 MiB: best measured at 1-2 threads)
_TABLE_BYTES = 1 << 29  # the largest table of exact bin heights (else sparse along H too)


def c_round(x: Tensor) -> Tensor:
    """C's round(): half away from zero (torch.round rounds half to even)."""
    t = torch.trunc(x)
    frac = x - t  # exact in floating point
    return t + (frac >= 0.5).to(x.dtype) - (frac <= -0.5).to(x.dtype)


def check_rois(rois: Tensor, batch: int, layer: str = "", kind: str = "ROIPooling") -> Tensor:
    """The rois' batch indices as int64 (C's truncating int conversion), after Caffe's
    CHECK_GE(roi_batch_ind, 0) and CHECK_LT(roi_batch_ind, batch_size)."""
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise InputError(f"{_who(layer, kind)}rois of shape {list(rois.shape)}; allowed: "
                         "R x 5 rows [batch_index, x1, y1, x2, y2]")
    index = rois[:, 0].to(torch.int64)
    if index.numel():
        low, high = int(index.min()), int(index.max())
        if low < 0 or high >= batch:
            bad = low if low < 0 else high
            raise InputError(f"{_who(layer, kind)}a roi has batch index {bad}; allowed: 0 to "
                             f"{batch - 1} (the features' batch size is {batch})")
    return index


def _who(layer: str, kind: str = "ROIPooling") -> str:
    return f"layer '{layer}' ({kind}): " if layer else f"{kind}: "


def roi_bins(rois: Tensor, dtype: torch.dtype, pooled_h: int, pooled_w: int,
             spatial_scale: float, height: int, width: int
             ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(hstart, hend) of shape R x pooled_h and (wstart, wend) R x pooled_w, int64, clipped
    to the map, exactly as Forward_cpu computes them in Dtype."""
    r = rois.to(dtype)
    scale = torch.tensor(spatial_scale, dtype=dtype, device=rois.device)
    corner = c_round(r[:, 1:5] * scale).to(torch.int64)  # start_w, start_h, end_w, end_h

    def axis(start: Tensor, end: Tensor, pooled: int, size: int) -> Tuple[Tensor, Tensor]:
        length = torch.clamp(end - start + 1, min=1).to(dtype)
        bin_size = length / torch.tensor(float(pooled), dtype=dtype, device=rois.device)
        p = torch.arange(pooled, dtype=dtype, device=rois.device)
        lo = torch.floor(p[None, :] * bin_size[:, None]).to(torch.int64) + start[:, None]
        hi = torch.ceil((p + 1)[None, :] * bin_size[:, None]).to(torch.int64) + start[:, None]
        return lo.clamp(0, size), hi.clamp(0, size)

    hstart, hend = axis(corner[:, 1], corner[:, 3], pooled_h, height)
    wstart, wend = axis(corner[:, 0], corner[:, 2], pooled_w, width)
    return hstart, hend, wstart, wend


# ---------------------------------------------------------------- CPU forward, float32

def _okey(v: Tensor) -> Tensor:
    """Order-preserving int32 of float32 bits (an involution)."""
    bits = v.view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


_NEG_KEY = (~int(_okey(torch.tensor([-FLT_MAX], dtype=torch.float32))[0]) << 32) | 0xFFFFFFFF


def _argmax_keys(x: Tensor) -> Tensor:
    """int64 keys whose min is Caffe's argmax: ~okey(value) in the high word (the larger
    value, the smaller key), h * W + w in the low word (ties: the first in row-major order
    wins); its low word, cast to int32, is the argmax.  Values not > -FLT_MAX (NaN, -inf,
    -FLT_MAX, which Caffe's `>` never takes) get _NEG_KEY, whose low word is -1.
    x: N x H x W x C float32."""
    n, h, w, c = x.shape
    high = torch.bitwise_not(_okey(x + 0.0))  # + 0.0: -0.0 and 0.0 tie, as for Caffe's >
    pos = torch.arange(h * w, dtype=torch.int64).view(1, h, w, 1)
    key = (high.to(torch.int64) << 32) | pos
    return key.masked_fill_(~(x > -FLT_MAX), _NEG_KEY)


def _log2_floor(n: Tensor) -> Tensor:
    out = torch.zeros_like(n)
    m = n.clone()
    while bool((m > 1).any()):
        out += (m > 1).to(out.dtype)
        m = m >> 1
    return out


def _axis_plan(size: Tensor, exact: bool) -> Tuple[Tensor, int]:
    """Per bin: its table level along one axis, and the number of levels.  Exact: one
    level per bin size (one window, the bin); sparse: one per power of two (two windows
    of 2^k that cover the bin)."""
    level = size.clamp(min=1) - 1 if exact else _log2_floor(size.clamp(min=1))
    return level, int(level.max()) + 1 if level.numel() else 1


def _fill_levels(levels: Tensor, exact: bool, reduce: Any) -> None:
    """levels[i] from levels[0] along the axis of size levels.shape[3] (H of a
    levels x W-levels x N x H x W x C table, W of a W-levels x N x H x W x C one): exact,
    level i reduces windows of i + 1; sparse, of 2^i.  Entries whose window would leave
    the map are left unset: no bin reads them."""
    size = levels.shape[3]
    for i in range(1, levels.shape[0]):
        s = i if exact else 1 << (i - 1)
        if s >= size:
            break
        prev = levels[i - 1].narrow(2, 0, size - s)
        step = (levels[0] if exact else levels[i - 1]).narrow(2, s, size - s)
        reduce(prev, step, out=levels[i].narrow(2, 0, size - s))


def _forward_float32(x: Tensor, batch: Tensor, hs: Tensor, he: Tensor, ws: Tensor, we: Tensor
                     ) -> Tuple[Tensor, Tensor]:
    """Max and argmax of every bin from two tables of window reductions over the
    channels-last map: the max of the values and the min of _argmax_keys.  Along H a table
    has one level per bin height (exact: the bin's own rows), along W one per power of two,
    and a bin reduces the two windows of 2^k columns at its two ends (max and min are
    idempotent, so they may overlap).  Where exact heights would take more than
    _TABLE_BYTES, H is sparse too (four windows per bin); where even that would, the
    channels go in groups."""
    n, c, h, w = x.shape
    r, ph_, pw_ = hs.shape[0], hs.shape[1], ws.shape[1]
    top = torch.empty((r, c, ph_, pw_), dtype=torch.float32)
    argmax = torch.empty((r, c, ph_, pw_), dtype=torch.int32)
    if top.numel() == 0:
        return top, argmax
    bh = (he - hs)[:, :, None].expand(r, ph_, pw_)
    bw = (we - ws)[:, None, :].expand(r, ph_, pw_)
    empty = (bh <= 0) | (bw <= 0)
    plane = n * h * w
    kw, nkw = _axis_plan(bw, exact=False)
    kh, nkh = _axis_plan(bh, exact=True)
    exact_h = nkh * nkw * plane * c * 12 <= _TABLE_BYTES
    if not exact_h:
        kh, nkh = _axis_plan(bh, exact=False)
    # Table rows of each bin's windows, window-major: 2 (exact H) or 4 per bin.
    size = nkh * nkw * plane
    base = ((kh * nkw + kw) * n + batch[:, None, None]) * (h * w)
    h1 = hs[:, :, None].expand(r, ph_, pw_)
    w1 = ws[:, None, :].expand(r, ph_, pw_)
    w2 = we[:, None, :] - (1 << kw)
    hrows = [h1] if exact_h else [h1, he[:, :, None] - (1 << kh)]
    rows = torch.stack([base + hh * w + ww for hh in hrows for ww in (w1, w2)])
    rows = rows.masked_fill_(empty, size).view(len(hrows) * 2, r, ph_ * pw_)
    group = max(1, min(c, _TABLE_BYTES // (size * 12)))
    for c0 in range(0, c, group):
        c1 = min(c, c0 + group)
        keys, vals = _tables(x[:, c0:c1], nkh, nkw, exact_h)
        _pool_rows(keys, vals, rows, top[:, c0:c1], argmax[:, c0:c1])
    return top, argmax


def _tables(x: Tensor, nkh: int, nkw: int, exact_h: bool) -> Tuple[Tensor, Tensor]:
    """The two tables, (nkh * nkw * N * H * W + 1) x C: window level (kh, kw) of plane
    (n, h, w) in row ((kh * nkw + kw) * N + n) * H * W + h * W + w; the last row is the
    one empty bins read (argmax -1, value 0)."""
    n, c, h, w = x.shape
    size = nkh * nkw * n * h * w
    keys = torch.empty((size + 1, c), dtype=torch.int64)
    vals = torch.empty((size + 1, c), dtype=torch.float32)
    keys[-1] = -1
    vals[-1] = 0.0
    xl = x.permute(0, 2, 3, 1)
    for table, first, reduce in ((keys, _argmax_keys(xl), torch.minimum),
                                 (vals, xl.clamp(min=-FLT_MAX).nan_to_num(nan=-FLT_MAX),
                                  torch.maximum)):
        levels = table[:-1].view(nkh, nkw, n, h, w, c)
        levels[0, 0] = first
        _fill_levels(levels[0], False, reduce)
        _fill_levels(levels, exact_h, reduce)
    return keys, vals


def _pool_rows(keys: Tensor, vals: Tensor, rows: Tensor, top: Tensor, argmax: Tensor) -> None:
    """top and argmax (R x C x PH x PW, views) from the windows' table rows (windows x R x
    PH*PW), a few rois at a time (_CHUNK keys per chunk)."""
    windows, r, bins = rows.shape
    c = keys.shape[1]
    step = max(1, _CHUNK // (bins * windows * c))
    kbuf = torch.empty(windows * step * bins * c, dtype=torch.int64)
    vbuf = torch.empty(windows * step * bins * c, dtype=torch.float32)
    top3 = top.view(r, c, bins) if top.is_contiguous() else top.flatten(2)
    arg3 = argmax.view(r, c, bins) if argmax.is_contiguous() else argmax.flatten(2)
    for r0 in range(0, r, step):
        r1 = min(r, r0 + step)
        m = (r1 - r0) * bins
        index = rows[:, r0:r1].reshape(-1)
        for buf, table, reduce, out in ((kbuf, keys, torch.minimum, arg3),
                                        (vbuf, vals, torch.maximum, top3)):
            got = buf[: windows * m * c].view(windows, m, c)
            torch.index_select(table, 0, index, out=got.view(-1, c))
            for i in range(1, windows):
                reduce(got[0], got[i], out=got[0])
            # R x PH*PW x C -> R x C x PH*PW; int64 keys -> int32 keeps the low word.
            out[r0:r1].copy_(got[0].view(r1 - r0, bins, c).transpose(1, 2))


# ---------------------------------------------------------------- CPU forward, any dtype

def _forward_padded(x: Tensor, batch: Tensor, hs: Tensor, he: Tensor, ws: Tensor, we: Tensor
                    ) -> Tuple[Tensor, Tensor]:
    """Max and argmax by gathering each bin padded to the largest bin (float64, as a
    check of the float32 kernel and for gradcheck).  torch.max returns the first
    maximum's index."""
    n, c, h, w = x.shape
    r, ph_, pw_ = hs.shape[0], hs.shape[1], ws.shape[1]
    top = torch.empty((r, c, ph_, pw_), dtype=x.dtype)
    argmax = torch.empty((r, c, ph_, pw_), dtype=torch.int32)
    if top.numel() == 0:
        return top, argmax
    kh = int((he - hs).max().clamp(min=1))
    kw = int((we - ws).max().clamp(min=1))
    neg = torch.tensor(-float("inf"), dtype=x.dtype)
    # -FLT_MAX and below (and NaN) are never taken: Caffe's `>` against its -FLT_MAX start.
    xs = torch.where(x > -FLT_MAX, x, neg).permute(0, 2, 3, 1).reshape(n * h * w, c)
    dh = torch.arange(kh)
    dw = torch.arange(kw)
    hh = hs[:, :, None] + dh  # R x PH x kh
    ww = ws[:, :, None] + dw  # R x PW x kw
    inside = (hh[:, :, None, :, None] < he[:, :, None, None, None]) & \
        (ww[:, None, :, None, :] < we[:, None, :, None, None])  # R x PH x PW x kh x kw
    pos = hh[:, :, None, :, None].clamp(max=h - 1) * w + \
        ww[:, None, :, None, :].clamp(max=w - 1)
    step = max(1, _MAX_GATHER // (ph_ * pw_ * kh * kw * c))
    for r0 in range(0, r, step):
        r1 = min(r, r0 + step)
        flat = (batch[r0:r1, None, None, None, None] * (h * w) + pos[r0:r1]).reshape(-1)
        vals = xs.index_select(0, flat).view(r1 - r0, ph_, pw_, kh * kw, c)
        vals = vals.masked_fill(~inside[r0:r1].reshape(r1 - r0, ph_, pw_, kh * kw, 1), neg)
        best, which = vals.max(dim=3)
        where = pos[r0:r1].reshape(r1 - r0, ph_, pw_, kh * kw)
        idx = torch.gather(where, 3, which).to(torch.int32)  # which: R x PH x PW x C
        found = best > -FLT_MAX
        empty = ~inside[r0:r1].flatten(3).any(dim=3)[..., None]
        best = torch.where(found, best, torch.full_like(best, -FLT_MAX))
        idx = torch.where(found, idx, torch.full_like(idx, -1))
        best = best.masked_fill(empty, 0.0)
        idx = idx.masked_fill(empty, -1)
        top[r0:r1] = best.permute(0, 3, 1, 2)
        argmax[r0:r1] = idx.permute(0, 3, 1, 2)
    return top, argmax


def _forward_cpu(features: Tensor, rois: Tensor, pooled_h: int, pooled_w: int,
                 spatial_scale: float, layer: str) -> Tuple[Tensor, Tensor]:
    n, c, h, w = features.shape
    batch = check_rois(rois, n, layer)
    # Caffe's Dtype is float or double: half precision features get float32 bins.
    geometry = torch.float64 if features.dtype == torch.float64 else torch.float32
    hs, he, ws, we = roi_bins(rois, geometry, pooled_h, pooled_w, spatial_scale, h, w)
    x = features.contiguous()
    if x.dtype == torch.float64:
        return _forward_padded(x, batch, hs, he, ws, we)
    top, argmax = _forward_float32(x.float(), batch, hs, he, ws, we)  # float16 is exact in it
    return top.to(x.dtype), argmax


def _backward_cpu(grad: Tensor, rois: Tensor, argmax: Tensor, batch: int, channels: int,
                  height: int, width: int) -> Tensor:
    """Backward_cpu: bottom_diff[b, c, argmax] += top_diff, roi by roi in Caffe's order
    (a 1-D scatter_add_ adds serially in index order).  Each (b, c) plane gets one slot
    in front, where argmax -1 (an empty bin, or a bin of nothing > -FLT_MAX) adds its
    diff."""
    r = grad.shape[0]
    plane = height * width + 1
    out = torch.zeros((batch * channels, plane), dtype=grad.dtype)
    if grad.numel() and argmax.numel():
        g = grad.contiguous().view(r, channels, -1)
        a = argmax.contiguous().view(r, channels, -1)
        start = torch.arange(channels, dtype=torch.int64).view(1, channels, 1) * plane + 1
        batch_start = (rois[:, 0].to(torch.int64) * (channels * plane)).view(-1, 1, 1)
        per_roi = channels * a.shape[2]
        step = max(1, _CHUNK // per_roi)
        buf = torch.empty(step * per_roi, dtype=torch.int64)
        flat_out = out.view(-1)
        for r0 in range(0, r, step):
            r1 = min(r, r0 + step)
            index = buf[: (r1 - r0) * per_roi]
            torch.add(a[r0:r1], start + batch_start[r0:r1], out=index.view(r1 - r0, channels, -1))
            flat_out.scatter_add_(0, index, g[r0:r1].reshape(-1))
    return out[:, 1:].contiguous().view(batch, channels, height, width)


# ---------------------------------------------------------------- the custom ops

@torch.library.custom_op("caffe_fx::roi_pool", mutates_args=())
def roi_pool_op(features: Tensor, rois: Tensor, pooled_h: int, pooled_w: int,
                spatial_scale: float, layer: str = "") -> Tuple[Tensor, Tensor]:
    """(top, argmax) of Fast R-CNN's ROIPooling; CPU kernel (CUDA: kernels/roi_pool.cu)."""
    _check_args(features, pooled_h, pooled_w, layer)
    return _forward_cpu(features, rois, pooled_h, pooled_w, spatial_scale, layer)


@roi_pool_op.register_fake
def _(features: Tensor, rois: Tensor, pooled_h: int, pooled_w: int, spatial_scale: float,
      layer: str = "") -> Tuple[Tensor, Tensor]:
    _check_args(features, pooled_h, pooled_w, layer)
    shape = (rois.shape[0], features.shape[1], pooled_h, pooled_w)
    return features.new_empty(shape), features.new_empty(shape, dtype=torch.int32)


@torch.library.custom_op("caffe_fx::roi_pool_backward", mutates_args=())
def roi_pool_backward_op(grad: Tensor, rois: Tensor, argmax: Tensor, batch: int,
                         channels: int, height: int, width: int) -> Tensor:
    """The features' diff of caffe_fx::roi_pool: each top diff added to its argmax."""
    return _backward_cpu(grad, rois, argmax, batch, channels, height, width)


@roi_pool_backward_op.register_fake
def _(grad: Tensor, rois: Tensor, argmax: Tensor, batch: int, channels: int, height: int,
      width: int) -> Tensor:
    return grad.new_empty((batch, channels, height, width))


def _check_args(features: Tensor, pooled_h: int, pooled_w: int, layer: str) -> None:
    if features.dim() != 4:
        raise InputError(f"{_who(layer)}features of shape {list(features.shape)}; allowed: "
                         "N x C x H x W")
    if pooled_h <= 0 or pooled_w <= 0:
        raise InputError(f"{_who(layer)}pooled_h = {pooled_h}, pooled_w = {pooled_w}; "
                         "allowed: > 0")


def _setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tuple[Tensor, Tensor]) -> None:
    features, rois = inputs[0], inputs[1]
    ctx.save_for_backward(rois, output[1])
    ctx.shape = tuple(features.shape)
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no zeros for the argmax's (integer) "gradient"


def _backward(ctx: Any, grad: Optional[Tensor], _grad_argmax: Any) -> Tuple[Any, ...]:
    if grad is None:
        return None, None, None, None, None, None
    rois, argmax = ctx.saved_tensors
    n, c, h, w = ctx.shape
    diff = torch.ops.caffe_fx.roi_pool_backward(grad, rois, argmax, n, c, h, w)
    return diff, None, None, None, None, None


roi_pool_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- CUDA (kernels/roi_pool.cu)

_SUFFIX = {torch.float32: "float32", torch.float64: "float64"}


def _cuda_dtype(features: Tensor, layer: str) -> str:
    if features.dtype not in _SUFFIX:
        raise InputError(f"{_who(layer)}CUDA features of dtype {features.dtype}; allowed: "
                         "float32, float64")
    return _SUFFIX[features.dtype]


def _roi_pool_cuda(features: Tensor, rois: Tensor, pooled_h: int, pooled_w: int,
                   spatial_scale: float, layer: str = "") -> Tuple[Tensor, Tensor]:
    _check_args(features, pooled_h, pooled_w, layer)
    suffix = _cuda_dtype(features, layer)
    n, c, h, w = features.shape
    check_rois(rois, n, layer)
    x = features.contiguous()
    r = rois.to(x.dtype).contiguous()
    top = x.new_empty((r.shape[0], c, pooled_h, pooled_w))
    argmax = x.new_empty(top.shape, dtype=torch.int32)
    scale = np.float32(spatial_scale) if suffix == "float32" else np.float64(spatial_scale)
    _cuda_kernels.launch("roi_pool", f"roi_pool_forward_{suffix}", top.numel(), (
        np.int32(top.numel()), x, scale, np.int32(c), np.int32(h), np.int32(w),
        np.int32(pooled_h), np.int32(pooled_w), r, top, argmax), x.device)
    return top, argmax


def _roi_pool_backward_cuda(grad: Tensor, rois: Tensor, argmax: Tensor, batch: int,
                            channels: int, height: int, width: int) -> Tensor:
    suffix = _cuda_dtype(grad, "")
    g = grad.contiguous()
    out = g.new_zeros((batch, channels, height, width))
    r = rois.to(g.dtype).contiguous()
    ph, pw = g.shape[2], g.shape[3]
    _cuda_kernels.launch("roi_pool", f"roi_pool_backward_{suffix}", g.numel(), (
        np.int32(g.numel()), g, argmax.contiguous(), r, np.int32(channels), np.int32(height),
        np.int32(width), np.int32(ph), np.int32(pw), out), g.device)
    return out


roi_pool_op.register_kernel("cuda")(_roi_pool_cuda)
roi_pool_backward_op.register_kernel("cuda")(_roi_pool_backward_cuda)


# ---------------------------------------------------------------- what generated code calls

@torch.fx.wrap
def roi_pool(features: Tensor, rois: Tensor, pooled_h: int, pooled_w: int,
             spatial_scale: float, layer: str = "") -> Tensor:
    """ROIPooling's top, R x C x pooled_h x pooled_w; differentiable in `features` (the
    rois get no diff, as in Caffe).  `layer` names the layer in errors."""
    if rois.dim() != 2:  # a legacy R x 5 x 1 x 1 blob
        rois = rois.reshape(rois.shape[0], 5)
    return torch.ops.caffe_fx.roi_pool(features, rois, pooled_h, pooled_w, spatial_scale,
                                       layer)[0]
