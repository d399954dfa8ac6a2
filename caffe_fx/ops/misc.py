"""Caffe-exact functionals for the utility, data-ish and vision layers.

Each mirrors one Caffe source file, named in its docstring: reduction_layer.cpp,
argmax_layer.cpp, mvn_layer.cpp, spp_layer.cpp, im2col_layer.cpp, batch_reindex_layer.cpp,
filter_layer.cpp, dummy_data_layer.cpp.  All re-read sizes from their inputs on every
call, as Caffe re-runs Reshape before every Forward; MVN differentiates as Caffe does.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._shape_check import legacy_shape
from .caffe_grad import caffe_grad, current_top, keep_top
from .functional import pool2d


@torch.fx.wrap
def reduction(x: Tensor, operation: str, axis: int, coeff: float) -> Tensor:
    """Reduction (src/caffe/layers/reduction_layer.cpp): every axis from `axis` on;
    MEAN scales by coeff / count(axis...)."""
    dims = list(range(axis, x.dim()))
    if operation == "ASUM":
        x = x.abs()
    elif operation == "SUMSQ":
        x = x * x
    y = torch.sum(x, dims)
    if operation == "MEAN":
        count = 1
        for d in dims:
            count *= x.shape[d]
        coeff = coeff / count
    if coeff != 1.0:
        y = y * coeff
    return y


def _sorted_desc(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Descending sort where equal values put the larger index first, as Caffe's
    std::partial_sort of (value, index) pairs with std::greater does."""
    n = x.shape[dim]
    values, idx = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
    return values, (n - 1) - idx


@torch.fx.wrap
def argmax(x: Tensor, top_k: int, out_max_val: bool, axis: Optional[int]) -> Tensor:
    """ArgMax (src/caffe/layers/argmax_layer.cpp), indices (and values) as floats.

    With `axis`: `shape[axis] = top_k`, indices or (out_max_val) values only.  Without:
    over each sample's flattened count(1...), top shape (N, 1 or 2, top_k, 1, ...) with at
    least 3 axes; out_max_val puts the indices in channel 0 and the values in channel 1.
    """
    if axis is not None:
        values, idx = _sorted_desc(x, axis)
        if out_max_val:
            return values.narrow(axis, 0, top_k)
        return idx.narrow(axis, 0, top_k).to(x.dtype)
    n = x.shape[0]
    values, idx = _sorted_desc(x.reshape(n, -1), 1)
    values, idx = values[:, :top_k], idx[:, :top_k].to(x.dtype)
    shape = [1] * max(x.dim(), 3)
    shape[0] = n
    shape[2] = top_k
    if out_max_val:
        shape[1] = 2
        return torch.stack([idx, values], 1).reshape(shape)
    return idx.reshape(shape)


def _mvn(x: Tensor, normalize_variance: bool, across_channels: bool, eps: float
         ) -> Tuple[Tensor, Tensor]:
    """(top, std + eps); the std is a dummy when the variance is not normalised."""
    shape = legacy_shape(list(x.shape))
    x = x.reshape(shape)
    dims = [1, 2, 3] if across_channels else [2, 3]
    y = x - x.mean(dims, keepdim=True)
    if not normalize_variance:
        return y, y
    std = (y * y).mean(dims, keepdim=True).sqrt() + eps
    return y / std, std


class CaffeMVN(torch.autograd.Function):
    """MVN with mvn_layer.cpp's Backward_cpu when it normalises the variance:
    (dy - mean(dy) - y mean(y dy)) / (std + eps), which drops the derivative of eps
    (and stays finite where a row has one element: std 0, y 0).  It reads the top's
    current data; in place its first caffe_mul overwrites the top diff it reads later."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, across_channels: bool, eps: float,
                top_is_bottom: bool) -> Tensor:
        y, std = _mvn(x, True, across_channels, eps)
        ctx.across_channels, ctx.top_is_bottom, ctx.in_shape = \
            across_channels, top_is_bottom, x.shape
        ctx.save_for_backward(y, std)
        keep_top(ctx, x, y, top_is_bottom)
        return y

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor) -> Tuple[Tensor, None, None, None]:
        saved_y, std = ctx.saved_tensors
        y = current_top(ctx, saved_y)
        dims = [1, 2, 3] if ctx.across_channels else [2, 3]
        dim = 1
        for axis in dims:
            dim *= y.shape[axis]
        if ctx.top_is_bottom:
            # One diff array D (= dy): D = y dy; D = sum(D); D = y D; D += sum(D); then
            # caffe_cpu_axpby(1, D, -1/dim, D), whose OpenBLAS kernel scales Y by beta
            # before adding alpha X, and X is Y: D = -2 D / dim (checked on the oracle).
            s = (y * dy).sum(dims, keepdim=True)
            d = y * s
            d = d + d.sum(dims, keepdim=True)
            d = d * (-2.0 / dim)
        else:
            d = y * (y * dy).sum(dims, keepdim=True)
            d = d + dy.sum(dims, keepdim=True)
            d = dy - d / dim
        return (d / std).reshape(ctx.in_shape), None, None, None


@torch.fx.wrap
def mvn(x: Tensor, normalize_variance: bool, across_channels: bool, eps: float,
        top_is_bottom: bool = False) -> Tensor:
    """MVN (src/caffe/layers/mvn_layer.cpp): per (n, c) or per n; eps is added to the
    standard deviation.  The top has Caffe's legacy 4-D shape (N, C, H, W).  Without
    variance normalisation, Caffe's backward (dy - mean(dy)) is torch's derivative."""
    if not torch.jit.is_scripting():
        if normalize_variance and caffe_grad(x):
            return CaffeMVN.apply(x, across_channels, eps, top_is_bottom)
    y, _ = _mvn(x, normalize_variance, across_channels, eps)
    return y


@torch.fx.wrap
def spp(x: Tensor, pyramid_height: int, max_pool: bool) -> Tensor:
    """SPP (src/caffe/layers/spp_layer.cpp): level l pools into 2^l bins per side with
    kernel = stride = ceil(size / bins), pad = (kernel * bins - size + 1) / 2 (Caffe's
    Pooling rules, pad clip included), flattened and concatenated in increasing l; a
    one-level pyramid is a single Pooling whose top stays 4-D."""
    h, w = x.shape[2], x.shape[3]
    levels: List[Tensor] = []
    for level in range(pyramid_height):
        bins = 2 ** level
        kh = int(math.ceil(h / bins))
        kw = int(math.ceil(w / bins))
        ph = (kh * bins - h + 1) // 2
        pw = (kw * bins - w + 1) // 2
        y = pool2d(x, [kh, kw], [kh, kw], [ph, pw], max_pool, True)
        if pyramid_height == 1:
            return y
        levels.append(torch.flatten(y, 1))
    return torch.cat(levels, 1)


@torch.fx.wrap
def im2col(x: Tensor, axis: int, kernel: List[int], stride: List[int], pad: List[int],
           dilation: List[int]) -> Tensor:
    """Im2col (src/caffe/layers/im2col_layer.cpp): channel axis becomes C * prod(kernel),
    ordered (c, k_0, ..., k_n-1) like F.unfold; the spatial layout is kept."""
    n = len(kernel)
    lead = list(x.shape[: axis + 1])
    padding: List[int] = []
    for i in range(n - 1, -1, -1):
        padding += [pad[i], pad[i]]
    cols = torch.nn.functional.pad(x, padding)
    for i in range(n):
        extent = dilation[i] * (kernel[i] - 1) + 1
        # Tensor.unfold appends the window axis; dilation keeps every d-th element of it.
        cols = cols.unfold(axis + 1 + i, extent, stride[i])
        if dilation[i] != 1:
            cols = cols[..., :: dilation[i]]
    # (*lead, out_0..out_n-1, k_0..k_n-1) -> (*lead, k_0..k_n-1, out_0..out_n-1)
    base = axis + 1
    order = list(range(base)) + [base + n + i for i in range(n)] + [base + i for i in range(n)]
    cols = cols.permute(order)
    out = list(cols.shape[base + n:])
    channels = lead[-1]
    for k in kernel:
        channels *= k
    return cols.reshape(lead[:-1] + [channels] + out)


@torch.fx.wrap
def batch_reindex(x: Tensor, permut: Tensor) -> Tensor:
    """BatchReindex (src/caffe/layers/batch_reindex_layer.cpp): top[i] = x[int(permut[i])]."""
    return x.index_select(0, permut.to(torch.long))


def _kept(selector: Tensor) -> Tensor:
    return torch.nonzero(selector.reshape(selector.shape[0], -1)[:, 0] != 0).reshape(-1)


@torch.fx.wrap
def filter_batch(x: Tensor, selector: Tensor) -> Tensor:
    """Filter (src/caffe/layers/filter_layer.cpp): keeps the items whose selector is
    nonzero, in order.  On meta tensors (shape inference) every item is kept, as Caffe's
    first Reshape sizes the tops with the full batch before looking at any data."""
    if selector.device.type == "meta":
        return x.clone()
    return x.index_select(0, _kept(selector))


@torch.fx.wrap
def filter_items(*bottoms: Tensor) -> List[Tensor]:
    """Filter with several filtered bottoms (the selector last), one top each (see
    `filter_batch`).  Variadic, so eager and fx only (not TorchScript)."""
    items, selector = list(bottoms[:-1]), bottoms[-1]
    if selector.device.type == "meta":
        return [x.clone() for x in items]
    keep = _kept(selector)
    return [x.index_select(0, keep) for x in items]


def _dummy(shape: List[int], filler: str, a: float, b: float) -> Tensor:
    if filler == "constant":
        return torch.full(shape, a)
    if filler == "uniform":
        return torch.empty(shape).uniform_(a, b)
    return torch.empty(shape).normal_(a, b)


@torch.fx.wrap
def dummy_blob(shape: List[int], filler: str, a: float, b: float) -> Tensor:
    """DummyData (src/caffe/layers/dummy_data_layer.cpp) with a random filler:
    "uniform" (U(a, b)) or "gaussian" (N(a, b)), drawn from torch's generator on every
    call as Caffe refills on every forward (so the values are not Caffe's)."""
    return _dummy(shape, filler, a, b)


@torch.fx.wrap
def dummy_data(shapes: List[List[int]], fillers: List[str], a: List[float],
               b: List[float]) -> List[Tensor]:
    """DummyData with several tops: one `dummy_blob` per top ("constant" fills a[i])."""
    return [_dummy(shape, f, lo, hi) for shape, f, lo, hi in zip(shapes, fillers, a, b)]
