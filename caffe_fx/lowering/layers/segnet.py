"""SegNet's layers (alexgkendall/caffe-segnet): BN (bn_param) and Upsample
(upsample_param) with the MAX Pooling mask, on the ops of ops/segnet.py; and the YOLO-style
nearest Upsample of ChenYingpeng/darknet2caffe, the same type name with one bottom.

Mirrors caffe-segnet's src/caffe/layers/bn_layer.cpp (LayerSetUp: blobs scale and shift
of (1, C, 1, 1) from scale_filler and shift_filler; MaxTopBlobs 3 in LEARN, 1 in
INFERENCE) and upsample_layer.cpp (LayerSetUp's CHECKs on upsample_h/w, scale, scale_h/w
and pad_out_h/w; Reshape's 4-D bottoms of one shape), and darknet2caffe's
caffe_layers/upsample_layer/upsample_layer.cpp (one bottom, top H * scale by W * scale).
"""
from __future__ import annotations

import warnings
from typing import Tuple

import torch
from torch import Tensor, nn

from ...errors import IgnoredFieldWarning, ShapeError
from ...ops import segnet as ops
from ...proto import caffe_pb2
from ..registry import Call, CaffeModule, LayerView, register

_BN = caffe_pb2.BNParameter


class BN(CaffeModule):
    """SegNet's BN: blobs `scale` and `shift`, (1, C, 1, 1).  LEARN normalises with the
    batch's own statistics in every phase (the fork keeps no running averages); INFERENCE
    is scale * x + shift, with mean and variance folded in beforehand (SegNet's
    compute_bn_statistics.py)."""

    caffe_blobs = ("scale", "shift")

    def __init__(self, channels: int, learn: bool, top_is_bottom: bool,
                 scale_filler: caffe_pb2.FillerParameter,
                 shift_filler: caffe_pb2.FillerParameter) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.empty(1, channels, 1, 1))
        self.shift = nn.Parameter(torch.empty(1, channels, 1, 1))
        self.fillers = [scale_filler, shift_filler]
        self.learn = learn
        self.top_is_bottom = top_is_bottom

    def forward(self, x: Tensor) -> Tensor:
        if self.learn:
            return ops.bn_learn(x, self.scale, self.shift, self.top_is_bottom)[0]
        return ops.bn_inference(x, self.scale, self.shift, self.top_is_bottom)

    def extra_repr(self) -> str:
        mode = "LEARN" if self.learn else "INFERENCE"
        return f"channels={self.scale.shape[1]}, bn_mode={mode}, eps={ops.BN_EPS}"


class BNMean(BN):
    """BN in LEARN with a second top: the batch mean, (1, C, 1, 1)."""

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        y, mean, _ = ops.bn_learn(x, self.scale, self.shift, self.top_is_bottom)
        return y, mean


class BNMeanVariance(BN):
    """BN in LEARN with tops 2 and 3: the batch mean and variance (before eps)."""

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return ops.bn_learn(x, self.scale, self.shift, self.top_is_bottom)


@register("BN", params=("bn_param",), bottoms=1, tops=(1, 3), fork="alexgkendall/caffe-segnet")
def bn(view: LayerView) -> BN:
    p = view.param.bn_param
    shape = view.input_shapes[0]
    if not 2 <= len(shape) <= 4:
        raise view.error(f"bottom of shape {list(shape)}; allowed: 2 to 4 axes (the fork "
                         "reads its legacy num, channels, height and width)", ShapeError)
    learn = p.bn_mode == _BN.LEARN
    if not learn and len(view.tops) > 1:
        raise view.fail("top count", len(view.tops),
                        "1 top with bn_mode INFERENCE (the fork's MaxTopBlobs; the batch "
                        "mean and variance tops exist only in LEARN)")
    cls = (BN, BNMean, BNMeanVariance)[len(view.tops) - 1]
    # The fork's GetFiller on an unset filler is a constant 0, as caffe_pb2's default.
    return cls(int(shape[1]), learn, view.tops[0] == view.bottoms[0], p.scale_filler,
               p.shift_filler)


_SEGNET_ONLY = ("scale_h", "scale_w", "pad_out_h", "pad_out_w", "upsample_h", "upsample_w")


# The one-bottom form is ChenYingpeng/darknet2caffe's (see _nearest); the type and its
# upsample_param are SegNet's.
@register("Upsample", params=("upsample_param",), bottoms=(1, 2), tops=1, inplace_ok=False,
          fork="alexgkendall/caffe-segnet")
def upsample(view: LayerView) -> Call:
    p = view.param.upsample_param
    if len(view.bottoms) == 1:
        return _nearest(view, p)
    data, mask = view.input_shapes
    if len(data) != 4 or len(mask) != 4 or data != mask:
        raise view.error(f"bottoms of shapes {list(data)} and {list(mask)}; allowed: the "
                         "4-D data and its MAX Pooling mask, of one shape", ShapeError)
    has = p.HasField
    if has("upsample_h") != has("upsample_w"):
        given = "upsample_h" if has("upsample_h") else "upsample_w"
        raise view.fail(f"upsample_param.{given}", getattr(p, given),
                        "upsample_h and upsample_w together (the fork ignores one alone)")
    if has("upsample_h"):  # the fork ignores scale and pad_out then
        ignored = [f for f in ("scale", "scale_h", "scale_w", "pad_out_h", "pad_out_w")
                   if has(f)]
        if ignored:
            warnings.warn(IgnoredFieldWarning(
                f"layer '{view.name}' ({view.type}): upsample_param."
                f"{', '.join(ignored)} set with upsample_h and upsample_w; ignored, as "
                "the fork's Reshape takes upsample_h / upsample_w first"), stacklevel=2)
        for name in ("upsample_h", "upsample_w"):
            if getattr(p, name) <= 1:
                raise view.fail(f"upsample_param.{name}", getattr(p, name), f"{name} > 1")
        return Call(ops.upsample_unpool, dict(
            scale_h=0, scale_w=0, pad_out_h=False, pad_out_w=False,
            upsample_h=int(p.upsample_h), upsample_w=int(p.upsample_w), layer=view.name))
    if has("scale_h") != has("scale_w") or (has("scale_h") and has("scale")):
        raise view.error("upsample_param: upsample_h and upsample_w, else scale, else "
                         "scale_h and scale_w together are required (Caffe: \"upsample_h "
                         "& upsample_w are required, else (DEPRECATED) scale OR scale_h & "
                         "scale_w are required.\")")
    if has("scale_h"):
        scale_h, scale_w = int(p.scale_h), int(p.scale_w)
        names = ("upsample_param.scale_h", "upsample_param.scale_w")
    else:
        scale_h = scale_w = int(p.scale)
        names = ("upsample_param.scale", "upsample_param.scale")
    for name, value in zip(names, (scale_h, scale_w)):
        if value <= 1:
            raise view.fail(name, value, f"{name.split('.')[1]} > 1")
    for axis, pad, scale in (("h", p.pad_out_h, scale_h), ("w", p.pad_out_w, scale_w)):
        if pad and scale != 2:
            raise view.fail(f"upsample_param.pad_out_{axis}", True,
                            f"pad_out_{axis} only with scale_{axis} == 2 (the fork: the "
                            "output size is ill-defined otherwise)")
    if data[2] * scale_h - int(p.pad_out_h) < 1 or data[3] * scale_w - int(p.pad_out_w) < 1:
        raise view.error(f"bottom of shape {list(data)} gives an empty top", ShapeError)
    return Call(ops.upsample_unpool, dict(
        scale_h=scale_h, scale_w=scale_w, pad_out_h=bool(p.pad_out_h),
        pad_out_w=bool(p.pad_out_w), upsample_h=0, upsample_w=0, layer=view.name))


def _nearest(view: LayerView, p: caffe_pb2.UpsampleParameter) -> Call:
    """The one-bottom form: ChenYingpeng/darknet2caffe's nearest Upsample, which reads
    only `scale`.  Its own UpsampleParameter declares `scale` with default 1 (SegNet's
    default is 2), so an unset scale is 1 here, as in that fork."""
    for name in _SEGNET_ONLY:
        if p.HasField(name):
            raise view.fail(f"upsample_param.{name}", getattr(p, name),
                            "only upsample_param.scale with one bottom (the YOLO-style "
                            "nearest Upsample of ChenYingpeng/darknet2caffe); SegNet's "
                            "Upsample takes a second bottom, the MAX Pooling mask")
    scale = int(p.scale) if p.HasField("scale") else 1
    if scale < 1:
        raise view.fail("upsample_param.scale", scale, "scale >= 1 (the fork divides by it)")
    if len(view.input_shapes[0]) != 4:
        raise view.error(f"bottom of shape {list(view.input_shapes[0])}; allowed: 4-D "
                         "(N, C, H, W), as the fork's Forward_cpu reads", ShapeError)
    return Call(ops.upsample_nearest, dict(scale=scale, layer=view.name))
