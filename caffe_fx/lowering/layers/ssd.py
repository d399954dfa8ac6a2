"""SSD's layers (weiliu89/caffe, branch ssd): Permute (permute_param), Normalize
(norm_param) and PriorBox (prior_box_param), on the ops of ops/ssd.py.

Mirrors the fork's src/caffe/layers/permute_layer.cpp (LayerSetUp: orders below the axis
count, no duplicates, the missing axes appended in order), normalize_layer.cpp (LayerSetUp:
2 or more axes, one blob: a scalar when channel_shared, else one per channel, filled with
scale_filler or the constant 1) and prior_box_layer.cpp (LayerSetUp's checks, its list of
aspect ratios and its int min_size / max_size; Reshape's top of 1 x 2 x H W P 4).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import ShapeError
from ...ops import ssd as ops
from ...proto import caffe_pb2
from ..registry import IDENTITY, Call, CaffeModule, LayerView, register


def fork_int(value: int) -> int:
    """A uint32 proto field (background_label_id) as the fork's `int` holds it: values of
    2**31 and more wrap to negative, so 4294967295 is -1 (no background class)."""
    value = int(value)
    return value - 2 ** 32 if value >= 2 ** 31 else value


@register("Permute", params=("permute_param",), bottoms=1, tops=1, fork="weiliu89/caffe")
def permute(view: LayerView):
    axes = len(view.input_shapes[0])
    order: list[int] = []
    for i, o in enumerate(view.param.permute_param.order):
        if o >= axes:
            raise view.fail(f"permute_param.order[{i}]", o,
                            f"an axis of the {axes}-D bottom, 0 to {axes - 1}")
        if o in order:
            raise view.fail(f"permute_param.order[{i}]", o,
                            "each axis once (Caffe: there are duplicate orders)")
        order.append(int(o))
    order += [i for i in range(axes) if i not in order]
    if order == list(range(axes)):
        return IDENTITY  # Caffe shares the bottom's data and diff
    return Call(ops.permute, dict(order=order))


class Normalize(CaffeModule):
    """scale * x / sqrt(sum x^2 + eps); blob 0 `scale` (0-D when channel_shared)."""

    caffe_blobs = ("scale",)

    def __init__(self, channels: int | None, across_spatial: bool, eps: float,
                 filler: caffe_pb2.FillerParameter) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.empty([] if channels is None else [channels]))
        self.fillers = [filler]
        self.across_spatial = across_spatial
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return ops.normalize(x, self.scale, self.across_spatial, self.eps)

    def extra_repr(self) -> str:
        return (f"scale={list(self.scale.shape)}, across_spatial={self.across_spatial}, "
                f"eps={self.eps}")


@register("Normalize", params=("norm_param",), bottoms=1, tops=1, inplace_ok=False,
          fork="weiliu89/caffe")
def normalize(view: LayerView) -> Normalize:
    p = view.param.norm_param
    shape = view.input_shapes[0]
    if not 2 <= len(shape) <= 4:
        raise view.error(f"bottom of shape {list(shape)}; allowed: 2 to 4 axes (Caffe: "
                         "number of axes of bottom blob must be >= 2, and its legacy "
                         "num/channels/height/width)", ShapeError)
    filler = p.scale_filler if p.HasField("scale_filler") else \
        caffe_pb2.FillerParameter(type="constant", value=1.0)
    return Normalize(None if p.channel_shared else int(shape[1]), p.across_spatial,
                     float(np.float32(p.eps)), filler)


def _positive(view: LayerView, field: str, value: float, bound: float = math.inf) -> None:
    if not 0 < value < bound:
        allowed = f"{field} > 0" if bound == math.inf else f"0 < {field} < {bound:g}"
        raise view.fail(f"prior_box_param.{field}", value, allowed)


@register("PriorBox", params=("prior_box_param",), bottoms=(1, 2), tops=1, fork="weiliu89/caffe")
def prior_box(view: LayerView) -> Call:
    p = view.param.prior_box_param
    if not p.min_size:
        raise view.fail("prior_box_param.min_size", "unset", "at least one min_size > 0")
    for i, v in enumerate(p.min_size):  # the fork truncates them to int
        _positive(view, f"min_size[{i}]", v, 2.0 ** 31)
    for i, v in enumerate(p.max_size):
        _positive(view, f"max_size[{i}]", v, 2.0 ** 31)
    for i, v in enumerate(p.aspect_ratio):  # the fork takes sqrt(ratio) and 1 / ratio
        _positive(view, f"aspect_ratio[{i}]", v)
    if p.max_size and len(p.max_size) != len(p.min_size):
        raise view.fail("prior_box_param.max_size", list(p.max_size),
                        f"one max_size per min_size ({len(p.min_size)})")
    for i, (lo, hi) in enumerate(zip(p.min_size, p.max_size)):
        if not hi > lo:
            raise view.fail(f"prior_box_param.max_size[{i}]", hi,
                            f"max_size > min_size = {lo}")
    if len(p.variance) not in (0, 1, 4):
        raise view.fail("prior_box_param.variance", list(p.variance),
                        "none (0.1), one value, or 4 values")
    for i, v in enumerate(p.variance):
        _positive(view, f"variance[{i}]", v)
    if (p.HasField("img_h") or p.HasField("img_w")) and p.HasField("img_size"):
        raise view.error("prior_box_param: either img_size or img_h/img_w may be given, "
                         "not both")
    if p.HasField("img_h") or p.HasField("img_w"):
        _positive(view, "img_h", p.img_h)
        _positive(view, "img_w", p.img_w)
        img_h, img_w = int(p.img_h), int(p.img_w)
    elif p.HasField("img_size"):
        _positive(view, "img_size", p.img_size)
        img_h = img_w = int(p.img_size)
    else:
        img_h = img_w = 0
    if (p.HasField("step_h") or p.HasField("step_w")) and p.HasField("step"):
        raise view.error("prior_box_param: either step or step_h/step_w may be given, "
                         "not both")
    if p.HasField("step_h") or p.HasField("step_w"):
        _positive(view, "step_h", p.step_h)
        _positive(view, "step_w", p.step_w)
        step_h, step_w = float(p.step_h), float(p.step_w)
    elif p.HasField("step"):
        _positive(view, "step", p.step)
        step_h = step_w = float(p.step)
    else:
        step_h = step_w = 0.0
    shapes = view.input_shapes
    if len(shapes[0]) != 4 or (img_h == 0 and (len(shapes) < 2 or len(shapes[1]) != 4)):
        raise view.error(
            f"bottoms of shapes {[list(s) for s in shapes]}; allowed: a 4-D feature map "
            "and, unless img_size or img_h/img_w is given, the 4-D image as bottom 1",
            ShapeError)
    widths, heights = _prior_sizes(p)
    kwargs = dict(widths=widths, heights=heights, img_h=img_h, img_w=img_w, step_h=step_h,
                  step_w=step_w, offset=float(p.offset), clip=bool(p.clip),
                  variance=[float(v) for v in p.variance] or [float(np.float32(0.1))])
    # With img_size given, bottom 1 is not read (Caffe's bottom count is unchecked).
    return Call(ops.prior_box if len(view.bottoms) == 2 else ops.prior_box_sized, kwargs)


def _prior_sizes(p: caffe_pb2.PriorBoxParameter) -> tuple[list[float], list[float]]:
    """Each prior's (width, height) at one location, in Forward_cpu's order: per min_size
    (truncated to int, `int min_size_ = min_sizes_[s]`), the square min_size box, the
    sqrt(int min * int max) box, then every aspect ratio but 1 (1 first, each given ratio
    once within 1e-6, then 1 / ratio when flip).  Float values, as the fork's floats."""
    f32 = np.float32
    ratios = [f32(1.0)]
    for ar in p.aspect_ratio:
        ar = f32(ar)
        if any(abs(float(ar) - float(r)) < 1e-6 for r in ratios):
            continue
        ratios.append(ar)
        if p.flip:
            ratios.append(f32(1.0 / float(ar)))
    widths: list[float] = []
    heights: list[float] = []
    for s, lo in enumerate(p.min_size):
        size = int(f32(lo))
        widths.append(float(size))
        heights.append(float(size))
        if p.max_size:
            side = float(f32(math.sqrt(size * int(f32(p.max_size[s])))))
            widths.append(side)
            heights.append(side)
        for ar in ratios:
            if abs(float(ar) - 1.0) < 1e-6:
                continue
            root = np.sqrt(ar)  # float sqrt of a float
            widths.append(float(f32(f32(size) * root)))
            heights.append(float(f32(f32(size) / root)))
    return widths, heights
