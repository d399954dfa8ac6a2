"""Loss layers and Accuracy: forward values as Caffe's blobs show them (unweighted).

Mirrors src/caffe/layers/loss_layer.cpp and the *_loss_layer.cpp / accuracy_layer.cpp
files (functionals in ops/loss.py), and SegNet's class-weighted SoftmaxWithLoss
(alexgkendall/caffe-segnet, loss_param.weight_by_label_freqs).  A loss layer written
without a top gets an anonymous one, as Caffe's AutoTopBlobs does.  Deliberate
difference: BVLC Caffe cannot set up SoftmaxWithLoss with a second (probability) top --
its internal Softmax copies the layer's loss_weights and fails their count check --
while caffe_fx computes it.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from google.protobuf.message import DecodeError
from torch import Tensor

from ...errors import IgnoredFieldWarning, NetDefinitionError, ShapeError, WeightsError
from ...frontend.read import blob_to_array
from ...ops import loss as ops
from ...proto import caffe_pb2
from ..registry import Call, CaffeModule, LayerView, register
from .softmax import canonical_axis

Shape = tuple[int, ...]


def _count(shape: Shape, start: int = 0, end: int | None = None) -> int:
    return int(np.prod(shape[start:end], dtype=np.int64))


def _require(view: LayerView, ok: bool, message: str) -> None:
    if not ok:
        raise view.error(message, ShapeError)


def loss_setup(view: LayerView, ntops: int = 1) -> None:
    """LossLayer::LayerSetUp + Layer::SetLossWeights: one default loss_weight is added
    when none is given, so several tops need one loss_weight each; LossLayer::Reshape
    wants the first dimensions of data and label to agree."""
    weights = len(view.param.loss_weight)
    if (weights or 1) != ntops:
        raise view.error(
            f"has {ntops} tops and {weights or 'no'} loss_weight (a loss layer gets one "
            f"default loss_weight, for top 0); allowed: one loss_weight per top, e.g. "
            f"{' '.join(['loss_weight: 1'] + ['loss_weight: 0'] * (ntops - 1))}",
            NetDefinitionError)
    a, b = view.input_shapes[0], view.input_shapes[1]
    _require(view, a[:1] == b[:1],
             f"bottoms have first dimensions {a[:1]} and {b[:1]}; the data and label "
             "should have the same first dimension")


def _ignore_label(loss_param: caffe_pb2.LossParameter) -> int | None:
    return loss_param.ignore_label if loss_param.HasField("ignore_label") else None


def loss_normalization(loss_param: caffe_pb2.LossParameter, legacy_default: int) -> str:
    """The `normalization` field wins; else legacy `normalize` (true -> VALID, false ->
    BATCH_SIZE); else `legacy_default` (VALID from the proto, BATCH_SIZE for
    SigmoidCrossEntropyLoss)."""
    if loss_param.HasField("normalization"):
        mode = loss_param.normalization
    elif loss_param.HasField("normalize"):
        mode = caffe_pb2.LossParameter.VALID if loss_param.normalize \
            else caffe_pb2.LossParameter.BATCH_SIZE
    else:
        mode = legacy_default
    return caffe_pb2.LossParameter.NormalizationMode.Name(mode)


def _class_axis(view: LayerView, axis: int, field: str) -> int:
    """Canonical class axis; the label must hold one value per (outer, inner) position."""
    shape = view.input_shapes[0]
    ax = canonical_axis(view, axis, len(shape), field)
    want = _count(shape, 0, ax) * _count(shape, ax + 1)
    _require(view, want == _count(view.input_shapes[1]),
             f"label of shape {list(view.input_shapes[1])} holds "
             f"{_count(view.input_shapes[1])} values; the bottom of shape {list(shape)} with "
             f"{field} = {axis} needs {want} (outer * inner)")
    return ax


@register("SoftmaxWithLoss", params=("softmax_param", "loss_param",
                                     "loss_param.weight_by_label_freqs",
                                     "loss_param.class_weighting"),
          bottoms=2, tops=(1, 2), auto_top=True, is_loss=True)
def softmax_with_loss(view: LayerView) -> Call:
    ntops = max(len(view.tops), 1)
    loss_setup(view, ntops)
    axis = _class_axis(view, view.param.softmax_param.axis, "softmax_param.axis")
    lp = view.param.loss_param
    if lp.weight_by_label_freqs:
        return _segnet_weighted(view, axis, ntops)
    if len(lp.class_weighting):
        warnings.warn(IgnoredFieldWarning(
            f"layer '{view.name}' ({view.type}): loss_param.class_weighting is set but "
            f"weight_by_label_freqs is not true; ignored, as SegNet's SoftmaxWithLoss "
            f"(alexgkendall/caffe-segnet) ignores it"), stacklevel=2)
    fn = ops.softmax_loss if ntops == 1 else ops.softmax_loss_with_prob
    return Call(fn, dict(axis=axis, ignore_label=_ignore_label(lp),
                         normalization=loss_normalization(lp, lp.normalization), layer=view.name))


def _segnet_weighted(view: LayerView, axis: int, ntops: int) -> Call:
    """SegNet's weight_by_label_freqs (alexgkendall/caffe-segnet softmax_loss_layer.cpp):
    one class_weighting per channel, the label's weight multiplying its loss term and its
    diff; the fork's LossParameter has `normalize` (default true: the count of non-ignored
    positions, unclamped) and no `normalization`."""
    lp = view.param.loss_param
    shape = view.input_shapes[0]
    weights = [float(w) for w in lp.class_weighting]
    if len(shape) > 4:  # the fork's bottom[0]->channels() is a legacy 4-D accessor
        raise view.error(f"loss_param.weight_by_label_freqs needs a bottom of at most 4 axes "
                         f"(the fork reads its legacy channels); got {list(shape)}",
                         ShapeError)
    channels = shape[1] if len(shape) > 1 else 1
    if len(weights) != channels:
        raise view.error(
            f"loss_param.class_weighting has {len(weights)} values but the bottom of shape "
            f"{list(shape)} has {channels} channels; allowed: one class_weighting per class "
            f"(Number of class weight values does not match the number of classes)",
            ShapeError)
    if shape[axis] > len(weights):
        raise view.error(
            f"softmax_param.axis = {view.param.softmax_param.axis} has {shape[axis]} classes "
            f"but loss_param.class_weighting {len(weights)} values (one per channel, axis 1); "
            f"allowed: at most as many classes as weights", ShapeError)
    if lp.HasField("normalization"):
        raise view.fail("loss_param.normalization",
                        caffe_pb2.LossParameter.NormalizationMode.Name(lp.normalization),
                        "loss_param.normalize (SegNet's weight_by_label_freqs loss has no "
                        "normalization field)")
    normalize = lp.normalize if lp.HasField("normalize") else True
    fn = ops.softmax_loss_weighted if ntops == 1 else ops.softmax_loss_weighted_with_prob
    return Call(fn, dict(class_weighting=weights, axis=axis, ignore_label=_ignore_label(lp),
                         normalize=normalize, layer=view.name))


@register("EuclideanLoss", params=("loss_param",), bottoms=2, tops=1, auto_top=True,
          is_loss=True)
def euclidean_loss(view: LayerView) -> Call:
    loss_setup(view)
    a, b = view.input_shapes
    _require(view, _count(a, 1) == _count(b, 1),
             f"bottoms of shape {list(a)} and {list(b)} differ in count(1) (Inputs must "
             "have the same dimension)")
    return Call(ops.euclidean_loss, dict(layer=view.name))


@register("SigmoidCrossEntropyLoss", params=("loss_param",), bottoms=2, tops=1,
          auto_top=True, is_loss=True)
def sigmoid_cross_entropy_loss(view: LayerView) -> Call:
    loss_setup(view)
    a, b = view.input_shapes
    _require(view, _count(a) == _count(b),
             f"bottoms of shape {list(a)} and {list(b)} differ in count (SIGMOID_CROSS_"
             "ENTROPY_LOSS layer inputs must have the same count)")
    lp = view.param.loss_param
    return Call(ops.sigmoid_cross_entropy_loss, dict(
        ignore_label=_ignore_label(lp),
        normalization=loss_normalization(lp, caffe_pb2.LossParameter.BATCH_SIZE),
        layer=view.name))


@register("HingeLoss", params=("hinge_loss_param", "loss_param"), bottoms=2, tops=1,
          auto_top=True, is_loss=True)
def hinge_loss(view: LayerView) -> Call:
    loss_setup(view)
    norm = view.param.hinge_loss_param.norm
    return Call(ops.hinge_loss, dict(squared=norm == caffe_pb2.HingeLossParameter.L2,
                                     layer=view.name))


@register("ContrastiveLoss", params=("contrastive_loss_param", "loss_param"), bottoms=3,
          tops=1, auto_top=True, is_loss=True)
def contrastive_loss(view: LayerView) -> Call:
    loss_setup(view)
    a, b, sim = view.input_shapes
    # ContrastiveLossLayer::LayerSetUp reads the legacy num/channels/height/width.
    legacy = [tuple((s + (1,) * 4)[:4]) for s in (a, b, sim)]
    _require(view, all(len(s) <= 4 for s in (a, b, sim)) and legacy[0][1] == legacy[1][1]
             and all(s[2:] == (1, 1) for s in legacy) and legacy[2][1] == 1,
             f"bottoms of shape {[list(s) for s in (a, b, sim)]}; allowed: (N, C, 1, 1) "
             "twice and a similarity of shape (N, 1, 1, 1), trailing 1s optional")
    p = view.param.contrastive_loss_param
    return Call(ops.contrastive_loss, dict(margin=p.margin, legacy_version=p.legacy_version,
                                           layer=view.name))


@register("MultinomialLogisticLoss", params=("loss_param",), bottoms=2, tops=1,
          auto_top=True, is_loss=True)
def multinomial_logistic_loss(view: LayerView) -> Call:
    loss_setup(view)
    label = view.input_shapes[1]
    _require(view, len(label) <= 4 and label[1:] == (1,) * len(label[1:]),
             f"label of shape {list(label)}; allowed: one label per sample, (N, 1, 1, 1) "
             "with trailing 1s optional")
    return Call(ops.multinomial_logistic_loss, dict(layer=view.name))


class InfogainLoss(CaffeModule):
    """InfogainLoss with H read from infogain_loss_param.source.  H is not one of
    Caffe's layer blobs (not in net.params), so it is a non-persistent buffer, restored
    from the file's values whenever the module is materialised."""

    def __init__(self, infogain: np.ndarray, axis: int, ignore_label: int | None,
                 normalization: str, layer: str = "") -> None:
        super().__init__()
        self._values = infogain
        self.caffe_layer = layer  # for the error of a forward on the wrong shape
        self.register_buffer("infogain", torch.empty(infogain.shape), persistent=False)
        self.axis, self.ignore_label, self.normalization = axis, ignore_label, normalization

    def to_empty(self, *, device, recurse: bool = True) -> InfogainLoss:
        super().to_empty(device=device, recurse=recurse)
        with torch.no_grad():
            self.infogain.copy_(torch.from_numpy(self._values))
        return self

    def forward(self, x: Tensor, label: Tensor) -> Tensor:
        return ops.infogain_loss(x, label, self.infogain, self.axis, self.ignore_label,
                                 self.normalization, self.caffe_layer)


class InfogainLossWithProb(InfogainLoss):
    """The same with the second top, the softmax probabilities."""

    def forward(self, x: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return ops.infogain_loss_with_prob(x, label, self.infogain, self.axis,
                                           self.ignore_label, self.normalization,
                                           self.caffe_layer)


def _read_infogain(view: LayerView, source: str) -> np.ndarray:
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(Path(source).read_bytes())
    except (OSError, DecodeError) as e:
        raise view.error(f"infogain_loss_param.source = '{source}' cannot be read as a "
                         f"binary BlobProto: {e}", WeightsError) from e
    return blob_to_array(blob, source).array


@register("InfogainLoss", params=("infogain_loss_param", "loss_param"), bottoms=(2, 3),
          tops=(1, 2), auto_top=True, is_loss=True)
def infogain_loss(view: LayerView) -> Call | InfogainLoss:
    ntops = max(len(view.tops), 1)
    loss_setup(view, ntops)
    lp, ip = view.param.loss_param, view.param.infogain_loss_param
    if lp.HasField("normalize"):
        raise view.fail("loss_param.normalize", lp.normalize,
                        "loss_param.normalization (InfogainLoss rejects the deprecated "
                        "normalize)")
    axis = _class_axis(view, ip.axis, "infogain_loss_param.axis")
    classes = view.input_shapes[0][axis]
    kwargs = dict(axis=axis, ignore_label=_ignore_label(lp),
                  normalization=loss_normalization(lp, lp.normalization), layer=view.name)
    if len(view.input_shapes) == 3:
        h = _count(view.input_shapes[2])
    elif ip.HasField("source"):
        values = _read_infogain(view, ip.source)
        h = values.size
    else:
        raise view.error("has 2 bottoms and no infogain_loss_param.source; allowed: H as "
                         "the third bottom or a binaryproto file in source",
                         NetDefinitionError)
    _require(view, h == classes * classes,
             f"the infogain matrix holds {h} values; {classes} classes need {classes ** 2}")
    if len(view.input_shapes) == 2:
        return (InfogainLoss if ntops == 1 else InfogainLossWithProb)(values, **kwargs)
    fn = ops.infogain_loss if ntops == 1 else ops.infogain_loss_with_prob
    return Call(fn, kwargs)


@register("Accuracy", params=("accuracy_param",), bottoms=2, tops=(1, 2))
def accuracy(view: LayerView) -> Call:
    p = view.param.accuracy_param
    axis = _class_axis(view, p.axis, "accuracy_param.axis")
    classes = _count(view.input_shapes[0]) // max(_count(view.input_shapes[1]), 1)
    _require(view, p.top_k <= classes,
             f"accuracy_param.top_k = {p.top_k} exceeds the {classes} classes (top_k must "
             "be less than or equal to the number of classes)")
    ignore = p.ignore_label if p.HasField("ignore_label") else None
    fn = ops.accuracy if len(view.tops) == 1 else ops.accuracy_per_class
    return Call(fn, dict(axis=axis, top_k=p.top_k, ignore_label=ignore, layer=view.name))
