"""pycaffe's `caffe.coord_map`: how layers move coordinates, and `crop()` built on it.

fcn.berkeleyvision.org's net.py files write `from caffe.coord_map import crop` and
`n.score_pool4c = crop(n.score_pool4, n.upscore2)`: crop() finds how the coordinates of
one net_spec Top relate to another's through the layers between them and returns the
`Crop` layer (axis, offsets) that aligns the first with the second.  Same rules and
results as BVLC Caffe 1.0's python/caffe/coord_map.py.

A map is (axis, a, b): a coordinate x of a layer's bottom lands at a * x + b in its top,
per spatial axis from `axis` on (a and b are arrays, one entry per axis, or the scalars
1 and 0 of the identity, whose axis is None).  A convolution or pooling of stride s,
extent k ((kernel_size - 1) * dilation + 1) and pad p maps x to (x + p - (k - 1) / 2) / s;
a deconvolution inverts that; pass-through layers (PASS_THROUGH_LAYERS) keep coordinates;
a Crop shifts them by its offset.  Other layers have no map: the walk stops there.

Where real pycaffe fails with an AssertionError, a KeyError or an AttributeError, or picks
one of two disagreeing paths at random (a set's order), this module raises a
CoordMapError that says what it found, naming the layers by type and their fields.
"""
from __future__ import annotations

from collections import deque
from typing import Any, cast

import numpy as np

from ..errors import (
    CoordMapAxisError,
    CoordMapError,
    CoordMapUndefinedError,
    CoordMapUnreachableError,
)
from .net_spec import Function, L, Top

__all__ = [
    "PASS_THROUGH_LAYERS",
    "AxisMismatchException",
    "UndefinedMapException",
    "compose",
    "conv_params",
    "coord_map",
    "coord_map_from_to",
    "crop",
    "crop_params",
    "inverse",
]

# pycaffe's names for them, for code that catches them.
UndefinedMapException = CoordMapUndefinedError
AxisMismatchException = CoordMapAxisError

# Layers whose top has its bottom's coordinates (pycaffe 1.0's list).
PASS_THROUGH_LAYERS = ["AbsVal", "BatchNorm", "Bias", "BNLL", "Dropout", "Eltwise", "ELU",
                       "Log", "LRN", "Exp", "MVN", "Power", "ReLU", "PReLU", "Scale",
                       "Sigmoid", "Split", "TanH", "Threshold"]

Map = tuple[int | None, Any, Any]
IDENTITY: Map = (None, 1, 0)

_LEGACY = ("kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")


def _describe(fn: Function) -> str:
    """'Pooling (kernel_size=2, stride=2)': a layer by its type and scalar fields (net_spec
    layers have no names until to_proto)."""
    fields = ", ".join(f"{k}={v!r}" for k, v in fn.params.items()
                       if not isinstance(v, (dict, list, tuple)) or k in ("kernel_size",
                                                                        "stride", "pad"))
    return f"{fn.type_name} ({fields})" if fields else fn.type_name


def _top(top: Top) -> str:
    return f"the {_describe(top.fn)} layer's top {top.n}"


def _spatial_fields(fn: Function) -> dict[str, Any]:
    # net_spec puts a layer's own fields at the top level (kernel_size=3) or, as FCN's
    # Deconvolutions do, in its *_param message (convolution_param=dict(...)).
    nested = "pooling_param" if fn.type_name == "Pooling" else "convolution_param"
    fields = fn.params.get(nested, fn.params)
    return fields if isinstance(fields, dict) else fn.params


def conv_params(fn: Function) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(axis, stride, extent, pad) of a Convolution, Deconvolution, Im2col or Pooling
    layer, as arrays over its spatial axes (extent: (kernel_size - 1) * dilation + 1)."""
    fields = _spatial_fields(fn)
    legacy = sorted(set(_LEGACY) & (set(fn.params) | set(fields)))
    if legacy:
        raise CoordMapError(
            f"coord_map: {_describe(fn)} sets {', '.join(legacy)}: cropping does not "
            "support legacy _h/_w params (as in pycaffe); the coordinate map reads "
            "kernel_size, stride, pad and dilation")
    if fn.type_name == "Pooling" and fields.get("global_pooling"):
        raise CoordMapUndefinedError(
            f"coord_map: {_describe(fn)} pools globally: its top has no coordinates")
    if "kernel_size" not in fields:
        raise CoordMapError(f"coord_map: {_describe(fn)} has no kernel_size")
    kernel = np.array(fields["kernel_size"], ndmin=1)
    dilation = np.array(fields.get("dilation", 1), ndmin=1)
    return (fields.get("axis", 1), np.array(fields.get("stride", 1), ndmin=1),
            (kernel - 1) * dilation + 1, np.array(fields.get("pad", 0), ndmin=1))


def crop_params(fn: Function) -> tuple[int, np.ndarray]:
    """(axis, offset) of a Crop layer, with Caffe's defaults (axis 2, offset 0)."""
    fields = fn.params.get("crop_param", fn.params)
    return fields.get("axis", 2), np.array(fields.get("offset", 0), ndmin=1)


def coord_map(fn: Function) -> Map:
    """The map from the layer's bottom coordinates to its top's; raises
    UndefinedMapException for layers that have none."""
    if fn.type_name in ("Convolution", "Pooling", "Im2col"):
        axis, stride, extent, pad = conv_params(fn)
        return axis, 1 / stride, (pad - (extent - 1) / 2) / stride
    if fn.type_name == "Deconvolution":
        axis, stride, extent, pad = conv_params(fn)
        return axis, stride, (extent - 1) / 2 - pad
    if fn.type_name in PASS_THROUGH_LAYERS:
        return IDENTITY
    if fn.type_name == "Crop":
        axis, offset = crop_params(fn)
        return axis - 1, 1, -offset  # the map's axis is the last one Crop keeps
    raise CoordMapUndefinedError(f"coord_map: {fn.type_name} layers have no coordinate map")


def compose(base_map: Map, next_map: Map) -> Map:
    """`base_map` after `next_map`: x -> base(next(x))."""
    ax1, a1, b1 = base_map
    ax2, a2, b2 = next_map
    if ax1 is not None and ax2 is not None and ax1 != ax2:
        raise CoordMapAxisError(
            f"coord_map: maps over different axes meet (axis {ax1} and axis {ax2}): the "
            "layers between the tops convolve or crop from different axes")
    return (ax2 if ax1 is None else ax1), a1 * a2, a1 * b2 + b1


def inverse(coord_map: Map) -> Map:
    """The map back: y -> (y - b) / a."""
    ax, a, b = coord_map
    return ax, 1 / a, -b / a


def _bottoms(top: Top) -> tuple[Top, ...]:
    # A Crop's second bottom only gives the crop its size: its coordinates are not the
    # top's.
    inputs = top.fn.inputs
    return inputs[:1] if top.fn.type_name == "Crop" else inputs


def _same(m1: Map, m2: Map) -> bool:
    """The same map (scales and shifts equal per axis, a scalar standing for every axis)."""
    if m1[0] is not None and m2[0] is not None and m1[0] != m2[0]:
        return False
    try:
        return all(bool(np.all(np.asarray(x) == np.asarray(y)))
                   for x, y in zip(m1[1:], m2[1:]))
    except ValueError:  # arrays over different numbers of axes
        return False


def _walk(start: Top,
          meeting: dict[Top, Map] | None = None) -> tuple[dict[Top, Map], Top | None]:
    """The Tops that `start` depends on through layers with maps, each with the map from
    its coordinates to start's, breadth first; with `meeting`, stops at (and returns) the
    first Top found there."""
    maps: dict[Top, Map] = {start: IDENTITY}
    queue = deque([start])
    while queue:
        top = queue.popleft()
        if meeting is not None and top in meeting:
            return maps, top
        try:
            step = coord_map(top.fn)
        except CoordMapUndefinedError:
            continue
        for bottom in _bottoms(top):
            found = compose(maps[top], step)
            if bottom not in maps:
                maps[bottom] = found
                queue.append(bottom)
            elif not _same(maps[bottom], found):
                raise CoordMapError(
                    f"coord_map: {_top(bottom)} is reached from {_top(start)} by two paths "
                    f"whose maps differ (scale {maps[bottom][1]}, shift {maps[bottom][2]} "
                    f"and scale {found[1]}, shift {found[2]}): the branches between them "
                    "are not aligned, so no crop fits both (pycaffe takes either, at random)")
    return maps, None


def coord_map_from_to(top_from: Top, top_to: Top) -> Map:
    """The map from top_from's coordinates to top_to's, through their nearest common
    ancestor: (axis, a, b) with top_to's coordinate = a * top_from's + b."""
    for name, top in (("top_from", top_from), ("top_to", top_to)):
        if not isinstance(top, Top):
            raise CoordMapError(f"coord_map_from_to: {name} is {type(top).__name__}, not a "
                                "net_spec Top (a layer's output)")
    from_maps, _ = _walk(top_from)
    to_maps, common = _walk(top_to, meeting=from_maps)
    if common is None:
        raise CoordMapUnreachableError(
            f"Could not compute map between tops; are they connected by spatial layers? "
            f"{_top(top_from)} and {_top(top_to)} share no ancestor reached through layers "
            "with coordinate maps (Convolution, Pooling, Deconvolution, Crop, "
            "PASS_THROUGH_LAYERS)")
    return compose(to_maps[common], inverse(from_maps[common]))


def crop(top_from: Top, top_to: Top) -> Top:
    """A Crop layer's top: top_from cut to top_to's size where their coordinates agree,
    i.e. L.Crop(top_from, top_to, crop_param=dict(axis=..., offset=[...]))."""
    ax, a, b = coord_map_from_to(top_from, top_to)
    what = f"crop({_top(top_from)}, {_top(top_to)})"
    if ax is None:
        raise CoordMapError(f"{what}: only pass-through layers lie between them, which "
                            "leave nothing to crop")
    a, b = np.asarray(a), np.asarray(b)
    if not (a == 1).all():
        raise CoordMapError(f"{what}: scale mismatch on crop (a = {a}): the tops' "
                            "coordinates differ by that factor (their strides); a crop "
                            "needs 1")
    if not (b <= 0).all():
        raise CoordMapError(f"{what}: cannot crop negative offset (b = {b}): top_to "
                            "starts before top_from")
    if not (np.round(b) == b).all():
        raise CoordMapError(f"{what}: cannot crop noninteger offset (b = {b})")
    offset = [int(v) for v in -np.round(b)]
    return cast(Top, L.Crop(top_from, top_to, crop_param={"axis": ax + 1, "offset": offset}))
