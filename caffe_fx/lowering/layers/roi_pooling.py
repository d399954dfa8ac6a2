"""ROIPooling (Fast R-CNN) and PSROIPooling (R-FCN): the custom ops of ops/roi_pool.py and
ops/psroi_pool.py.

Mirrors rbgirshick/caffe-fast-rcnn src/caffe/layers/roi_pooling_layer.cpp (LayerSetUp's
CHECK_GT of pooled_h and pooled_w, Reshape's top of R x C x pooled_h x pooled_w) and
ppengtang/caffe src/caffe/layers/psroi_pooling_layer.cpp (CHECK_GT of output_dim and
group_size, CHECK_EQ(channels, output_dim * group_size^2), top R x output_dim x group_size x
group_size).  Bottoms: the features and the rois, R rows of [batch_index, x1, y1, x2, y2];
the rois get no diff.  The second top some prototxts give ROIPooling is not Caffe's (its
argmax is internal), so one top only.
"""
from __future__ import annotations

import math

from ...errors import ShapeError
from ...ops import psroi_pool as psroi_ops
from ...ops import roi_pool as roi_ops
from ..registry import Call, LayerView, register


def _check_bottoms(view: LayerView) -> None:
    features, rois = view.input_shapes[0], view.input_shapes[1]
    if len(features) != 4:
        raise view.error(f"features (bottom 0) of shape {list(features)}; allowed: 4-D "
                         "N x C x H x W", ShapeError)
    if len(rois) < 2 or math.prod(rois[1:]) != 5:
        raise view.error(f"rois (bottom 1) of shape {list(rois)}; allowed: R x 5 (rows "
                         "[batch_index, x1, y1, x2, y2])", ShapeError)


@register("ROIPooling", params=("roi_pooling_param",), bottoms=2, tops=1,
          fork="rbgirshick/caffe-fast-rcnn")
def roi_pooling(view: LayerView) -> Call:
    p = view.param.roi_pooling_param
    for name in ("pooled_h", "pooled_w"):
        if getattr(p, name) <= 0:
            raise view.fail(f"roi_pooling_param.{name}", getattr(p, name),
                            f"{name} > 0 (Caffe: CHECK_GT({name}, 0))")
    _check_bottoms(view)
    return Call(roi_ops.roi_pool, dict(pooled_h=int(p.pooled_h), pooled_w=int(p.pooled_w),
                                       spatial_scale=float(p.spatial_scale), layer=view.name))


@register("PSROIPooling", params=("psroi_pooling_param",), bottoms=2, tops=1,
          fork="ppengtang/caffe")
def psroi_pooling(view: LayerView) -> Call:
    p = view.param.psroi_pooling_param
    for name in ("spatial_scale", "output_dim", "group_size"):
        if not p.HasField(name):
            raise view.fail(f"psroi_pooling_param.{name}", "unset",
                            f"a value: {name} is a required field")
    for name in ("output_dim", "group_size"):
        if getattr(p, name) <= 0:
            raise view.fail(f"psroi_pooling_param.{name}", getattr(p, name),
                            f"{name} > 0 (Caffe: CHECK_GT({name}, 0))")
    _check_bottoms(view)
    channels = view.input_shapes[0][1]
    if channels != p.output_dim * p.group_size ** 2:
        raise view.error(
            f"features of {channels} channels, psroi_pooling_param.output_dim = "
            f"{p.output_dim}, group_size = {p.group_size}; allowed: channels == output_dim * "
            f"group_size^2 = {p.output_dim * p.group_size ** 2} (Caffe: input channel number "
            "does not match layer parameters)", ShapeError)
    return Call(psroi_ops.psroi_pool, dict(output_dim=int(p.output_dim),
                                           group_size=int(p.group_size),
                                           spatial_scale=float(p.spatial_scale),
                                           layer=view.name))
