"""Interp (interp_param), DeepLab v2's bilinear resize as hszhao/PSPNet ships it, on
ops/interp.py.

Mirrors the fork's src/caffe/layers/interp_layer.cpp: LayerSetUp refuses pad_beg or
pad_end > 0 (they only crop), and Reshape picks the output size by the first of these
that holds: shrink_factor set alone, zoom_factor set alone, height and width both set,
both factors set (shrink, then zoom); otherwise LOG(FATAL).  Factors must be >= 1 and
the cropped input and the output positive.  One bottom, one top, never in place (the top
is reshaped before the bottom is read).
"""
from __future__ import annotations

import warnings

from ...errors import IgnoredFieldWarning, ShapeError
from ...ops import interp as ops
from ...ops._shape_check import legacy_shape
from ..registry import Call, LayerView, register


@register("Interp", params=("interp_param",), bottoms=1, tops=1, inplace_ok=False,
          fork="hszhao/PSPNet")
def interp(view: LayerView) -> Call:
    p = view.param.interp_param
    for field in ("pad_beg", "pad_end"):
        if getattr(p, field) > 0:
            raise view.fail(f"interp_param.{field}", getattr(p, field),
                            "0 or less (the fork: \"Only supports non-pos padding "
                            "(cropping) for now\")")
    shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
    if shrink and not zoom:
        mode = ops.SHRINK
    elif zoom and not shrink:
        mode = ops.ZOOM
    elif p.HasField("height") and p.HasField("width"):
        mode = ops.SIZE
    elif shrink and zoom:
        mode = ops.SHRINK_ZOOM
    else:
        raise view.error("interp_param gives no output size; allowed: zoom_factor, "
                         "shrink_factor, both, or height and width together (the fork "
                         "stops with LOG(FATAL))")
    ignored = [f for f in ("height", "width") if mode != ops.SIZE and p.HasField(f)]
    if ignored:
        warnings.warn(IgnoredFieldWarning(
            f"layer '{view.name}' ({view.type}): interp_param."
            f"{' and '.join(ignored)} set with a shrink/zoom factor; ignored, as the fork's "
            "Reshape takes a factor set alone (or both factors) first"), stacklevel=2)
    if mode in (ops.SHRINK, ops.SHRINK_ZOOM) and p.shrink_factor < 1:
        raise view.fail("interp_param.shrink_factor", p.shrink_factor, "1 or more")
    if mode in (ops.ZOOM, ops.SHRINK_ZOOM) and p.zoom_factor < 1:
        raise view.fail("interp_param.zoom_factor", p.zoom_factor, "1 or more")
    if mode == ops.SIZE:
        for field in ("height", "width"):
            if getattr(p, field) <= 0:
                raise view.fail(f"interp_param.{field}", getattr(p, field),
                                "a positive size (the fork: \"height should be positive\")")
    shape = view.input_shapes[0]
    if not 1 <= len(shape) <= 4:
        raise view.error(f"bottom of shape {list(shape)}; allowed: 1 to 4 axes (the fork "
                         "reads num, channels, height and width)", ShapeError)
    legacy = legacy_shape(list(shape))
    crop = p.pad_beg + p.pad_end
    if legacy[2] + crop <= 0 or legacy[3] + crop <= 0:
        raise view.error(f"bottom of shape {list(shape)} cropped by pad_beg {p.pad_beg} "
                         f"and pad_end {p.pad_end} leaves {legacy[2] + crop} x "
                         f"{legacy[3] + crop}; Caffe: \"height should be positive\"",
                         ShapeError)
    return Call(ops.interp, dict(mode=mode, height=int(p.height), width=int(p.width),
                                 zoom=int(p.zoom_factor), shrink=int(p.shrink_factor),
                                 pad_beg=int(p.pad_beg), pad_end=int(p.pad_end),
                                 layer=view.name))
