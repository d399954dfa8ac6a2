"""The R-CNN forks' loss layers and GlobalSumPooling (functionals in ops/rcnn.py).

Mirrors rbgirshick/caffe-fast-rcnn's smooth_L1_loss_layer.{cpp,cu} (branch fast-rcnn:
2 or 3 bottoms; branch faster-rcnn, which ppengtang/caffe copies: 2 or 4 bottoms and
smooth_l1_loss_param.sigma), and ppengtang/caffe's weighted_softmax_loss_layer.cpp,
global_sum_pooling_layer.cpp, multi_class_cross_entropy_loss_layer.cpp and
multi_class_sigmoid_cross_entropy_loss_layer.cpp.  A SmoothL1Loss's form is its bottom
count: 3 is Fast R-CNN's (bbox_loss_weights), 4 is py-faster-rcnn's (inside and outside
weights); 2 is the same in both.  The fork's LossParameter PRE_FIXED mode and
pre_fixed_normalizer are read by SmoothL1LossOHEM only, which is not lowered.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...ops import rcnn as ops
from ...ops._shape_check import legacy_shape
from ..registry import Call, LayerView, register
from .loss import _class_axis, _ignore_label, loss_setup, loss_normalization

Shape = tuple[int, ...]


def _legacy(shape: Shape) -> tuple[int, ...] | None:
    """Blob::LegacyShape's (num, channels, height, width), or None past 4 axes."""
    return tuple(legacy_shape(list(shape))) if len(shape) <= 4 else None


@register("SmoothL1Loss", params=("smooth_l1_loss_param", "loss_param"), bottoms=(2, 4),
          tops=1, auto_top=True, is_loss=True, fork="rbgirshick/caffe-fast-rcnn")
def smooth_l1_loss(view: LayerView) -> Call:
    loss_setup(view)
    shapes = view.input_shapes
    legacy = [_legacy(s) for s in shapes]
    if any(s is None for s in legacy) or any(s != legacy[0] for s in legacy[1:]):
        raise view.error(
            f"bottoms of shape {[list(s) for s in shapes]}; allowed: every bottom of the "
            "prediction's shape, at most 4 axes (Reshape checks num, channels, height and "
            "width)", ShapeError)
    p = view.param.smooth_l1_loss_param
    if len(shapes) == 3:
        if p.HasField("sigma"):
            raise view.fail("smooth_l1_loss_param.sigma", p.sigma,
                            "no sigma with 3 bottoms: Fast R-CNN's 3-bottom SmoothL1Loss has "
                            "no sigma, and py-faster-rcnn's takes 2 or 4 bottoms")
        return Call(ops.smooth_l1_loss_weighted, dict(layer=view.name))
    if not p.sigma > 0:
        raise view.fail("smooth_l1_loss_param.sigma", p.sigma, "sigma > 0 (the loss "
                        "divides by sigma^2)")
    # sigma2_ = sigma * sigma in Dtype (float).
    sigma2 = float(np.float32(p.sigma) * np.float32(p.sigma))
    fn = ops.smooth_l1_loss if len(shapes) == 2 else ops.smooth_l1_loss_in_out
    return Call(fn, dict(sigma2=sigma2, layer=view.name))


@register("WeightedSoftmaxWithLoss", params=("softmax_param", "loss_param"), bottoms=3,
          tops=1, auto_top=True, is_loss=True, fork="ppengtang/caffe")
def weighted_softmax_with_loss(view: LayerView) -> Call:
    loss_setup(view)
    axis = _class_axis(view, view.param.softmax_param.axis, "softmax_param.axis")
    outer = int(np.prod(view.input_shapes[0][:axis], dtype=np.int64))
    weights = view.input_shapes[2]
    if not weights or weights[0] != outer:
        raise view.error(f"weights of shape {list(weights)}; allowed: a first dimension of "
                         f"{outer}, one weight per outer row of the scores (outer_num_ == "
                         "bottom[2]->num())", ShapeError)
    lp = view.param.loss_param
    return Call(ops.weighted_softmax_loss, dict(
        axis=axis, ignore_label=_ignore_label(lp),
        normalization=loss_normalization(lp, lp.normalization), layer=view.name))


@register("GlobalSumPooling", bottoms=1, tops=1, inplace_ok=False, fork="ppengtang/caffe")
def global_sum_pooling(view: LayerView) -> Call:
    if len(view.input_shapes[0]) < 2:
        raise view.error(f"bottom of shape {list(view.input_shapes[0])}; allowed: at least "
                         "2 axes (Number of axes of bottom blob must be >=2)", ShapeError)
    return Call(ops.global_sum_pooling, dict(layer=view.name))


def _multiclass_setup(view: LayerView) -> None:
    """Reshape: batch_size = num(), channels = channels(); both bottoms are read as
    num * channels values (trailing axes of 1 allowed)."""
    loss_setup(view)
    x, label = view.input_shapes
    n, c = (x[0], x[1] if len(x) > 1 else 1) if x else (1, 1)
    if int(np.prod(x)) != n * c or int(np.prod(label)) != n * c:
        raise view.error(
            f"bottoms of shape {list(x)} and {list(label)}; allowed: (N, C) scores and labels "
            "of N * C values (trailing axes of 1 allowed)", ShapeError)


@register("MulticlassCrossEntropyLoss", params=("loss_param",), bottoms=2, tops=1,
          auto_top=True, is_loss=True, fork="ppengtang/caffe")
def multiclass_cross_entropy_loss(view: LayerView) -> Call:
    _multiclass_setup(view)
    return Call(ops.multiclass_cross_entropy_loss, dict(layer=view.name))


@register("MulticlassSigmoidCrossEntropyLoss", params=("loss_param",), bottoms=2, tops=1,
          auto_top=True, is_loss=True, fork="ppengtang/caffe")
def multiclass_sigmoid_cross_entropy_loss(view: LayerView) -> Call:
    _multiclass_setup(view)
    return Call(ops.multiclass_sigmoid_cross_entropy_loss, dict(layer=view.name))

