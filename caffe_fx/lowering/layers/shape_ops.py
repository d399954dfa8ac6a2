"""Layers that only move data: Concat, Slice, Split, Flatten, Reshape, Crop, Tile.

Mirrors src/caffe/layers/{concat,slice,split,flatten,reshape,crop,tile}_layer.cpp.
Sizes Caffe takes from the bottoms at every forward (Reshape's 0 and -1, Crop's
reference, Slice's last piece) stay runtime values.  Caffe's Reshape and Flatten tops
share memory with the bottom; here they are views as well.
"""
from __future__ import annotations

import math

import torch

from ...errors import ShapeError
from ...ops import shape as CS
from ..registry import IDENTITY, Call, LayerView, Lowered, register
from .softmax import canonical_axis


def _legacy_axis(view: LayerView, p, legacy: str, ndim: int, where: str) -> int:
    """Concat's concat_dim / Slice's slice_dim: a non-negative axis, not with `axis`."""
    if p.HasField("axis") and p.HasField(legacy):
        raise view.fail(f"{where}.{legacy}", getattr(p, legacy),
                        f"either axis or {legacy}, not both")
    if p.HasField(legacy):
        value = getattr(p, legacy)
        if value >= ndim:
            raise view.error(f"{where}.{legacy} = {value} is out of range for a {ndim}-D "
                             f"bottom; allowed: 0 to {ndim - 1}", ShapeError)
        return value
    return canonical_axis(view, p.axis, ndim, f"{where}.axis")


@register("Concat", params=("concat_param",), bottoms=(1, None), tops=1)
def concat(view: LayerView) -> Lowered:
    shapes = view.input_shapes
    axis = _legacy_axis(view, view.param.concat_param, "concat_dim", len(shapes[0]),
                        "concat_param")
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0]))
                                           if i != axis):
            raise view.error(f"bottoms must match on every axis but {axis}; got "
                             f"{[list(t) for t in shapes]}", ShapeError)
    if len(shapes) == 1:
        return IDENTITY  # Caffe's top shares the one bottom's data
    return Call(CS.caffe_concat, dict(dim=axis, layer=view.name), packed=True)


@register("Slice", params=("slice_param",), bottoms=1, tops=(1, None))
def slice_(view: LayerView) -> Lowered:  # trailing _: `slice` is a builtin
    p = view.param.slice_param
    shape = view.input_shapes[0]
    axis = _legacy_axis(view, p, "slice_dim", len(shape), "slice_param")
    n, size = len(view.tops), shape[axis]
    points = list(p.slice_point)
    if points:
        if len(points) != n - 1:
            raise view.fail("slice_param.slice_point", points,
                            f"exactly {n - 1} points for {n} tops")
        if any(b <= a for a, b in zip([0] + points, points + [size])):
            raise view.error(f"slice_param.slice_point = {points} must increase strictly "
                             f"within (0, {size}) on axis {axis}", ShapeError)
    elif size % n:
        raise view.error(f"axis {axis} of size {size} cannot be sliced equally into {n} "
                         "tops", ShapeError)
    if n == 1:
        return IDENTITY  # Caffe's top shares the bottom's data
    if points:
        return Call(CS.caffe_slice, dict(dim=axis, points=points, sections=0, layer=view.name))
    return Call(CS.caffe_slice, dict(dim=axis, points=[], sections=n, layer=view.name))


@register("Split", bottoms=1, tops=(1, None), inplace_ok=False)
def split(view: LayerView) -> Lowered:
    return IDENTITY  # forward shares the bottom; autograd sums the tops' gradients


@register("Flatten", params=("flatten_param",), bottoms=1, tops=1, inplace_ok=False)
def flatten(view: LayerView) -> Call:
    p = view.param.flatten_param
    ndim = len(view.input_shapes[0])
    start = canonical_axis(view, p.axis, ndim, "flatten_param.axis")
    end = canonical_axis(view, p.end_axis, ndim, "flatten_param.end_axis")
    if start > end:
        raise view.fail("flatten_param.end_axis", p.end_axis,
                        f"an axis at or after flatten_param.axis = {p.axis}")
    return Call(torch.flatten, dict(start_dim=start, end_dim=end))


@register("Reshape", params=("reshape_param",), bottoms=1, tops=1, inplace_ok=False)
def reshape(view: LayerView) -> Call:
    p = view.param.reshape_param
    shape = view.input_shapes[0]
    ndim = len(shape)
    dims = list(p.shape.dim)
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise view.fail("reshape_param.shape", dims,
                        "dims >= 0 (0 copies the input dim) and at most one -1 (inferred)")
    start = p.axis if p.axis >= 0 else ndim + p.axis + 1
    if not 0 <= start <= ndim:
        raise view.error(f"reshape_param.axis = {p.axis} is out of range for a {ndim}-D "
                         f"bottom; allowed: {-ndim - 1} to {ndim}", ShapeError)
    if p.num_axes < -1:
        raise view.fail("reshape_param.num_axes", p.num_axes, "-1 (to the end) or a count >= 0")
    end = ndim if p.num_axes == -1 else start + p.num_axes
    if end > ndim:
        raise view.error(f"reshape_param.num_axes = {p.num_axes} from axis {start} runs past "
                         f"the {ndim}-D bottom", ShapeError)
    for i, d in enumerate(dims):
        if d == 0 and start + i >= ndim:
            raise view.error(f"reshape_param.shape.dim[{i}] = 0 copies axis {start + i}, "
                             f"which the {ndim}-D bottom lacks", ShapeError)
    known = math.prod(shape[start + i] if d == 0 else d for i, d in enumerate(dims) if d != -1)
    span = math.prod(shape[start:end])
    if (-1 in dims and (known == 0 or span % known)) or (-1 not in dims and known != span):
        raise view.error(f"reshape_param.shape {dims} does not fit axes {start} to {end} "
                         f"of the bottom {list(shape)}", ShapeError)
    return Call(CS.caffe_reshape, dict(start=start, end=end, dims=dims, layer=view.name))


@register("Crop", params=("crop_param",), bottoms=2, tops=1)
def crop(view: LayerView) -> Call:
    p = view.param.crop_param
    shape, ref = view.input_shapes
    if len(shape) != len(ref):
        raise view.error(f"both bottoms need the same number of axes; got {list(shape)} "
                         f"and {list(ref)}", ShapeError)
    axis = canonical_axis(view, p.axis, len(shape), "crop_param.axis")
    n = len(shape) - axis
    offsets = list(p.offset)
    if len(offsets) == 1:
        offsets = offsets * n
    elif not offsets:
        offsets = [0] * n
    elif len(offsets) != n:
        raise view.fail("crop_param.offset", list(p.offset),
                        f"none, one, or one per cropped axis ({n})")
    for i, off in enumerate(offsets):
        if shape[axis + i] - off < ref[axis + i]:
            raise view.error(f"crop of size {ref[axis + i]} at offset {off} does not fit "
                             f"axis {axis + i} of size {shape[axis + i]}", ShapeError)
    return Call(CS.caffe_crop, dict(axis=axis, offsets=offsets, layer=view.name))


@register("Tile", params=("tile_param",), bottoms=1, tops=1)
def tile(view: LayerView) -> Call:
    p = view.param.tile_param
    ndim = len(view.input_shapes[0])
    axis = canonical_axis(view, p.axis, ndim, "tile_param.axis")
    if p.tiles <= 0:
        raise view.fail("tile_param.tiles", p.tiles, "a positive count (it is required)")
    return Call(torch.tile, dict(dims=[1] * axis + [p.tiles] + [1] * (ndim - axis - 1)))
