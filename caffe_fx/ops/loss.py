"""Caffe-exact loss and metric functionals, used by lowering/layers/loss.py.

Each mirrors the Forward_cpu of one file in src/caffe/layers/ (named per function), and,
where Caffe's Backward_cpu is not the derivative of that forward, differentiates with
Caffe's formula (autograd Functions below).  Labels arrive as float tensors and are
truncated to int as Caffe's static_cast<int> does, and never get a gradient: loss layers
do not backpropagate to their labels.  An `ignore_label` of None means loss_param/
accuracy_param has none.  Every loss is a 0-axis tensor, as Caffe's loss top has shape [].
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import InputError
from ._shape_check import count as _numel  # _numel: the name rcnn.py imports
from ._shape_check import dims, wrong_shape
from .caffe_grad import caffe_grad, transformed

# TorchScript cannot read module-level floats, so the two clamps are written inline:
# FLT_MIN = 1.1754943508222875e-38 (ops/constants.py; SoftmaxWithLoss) and kLOG_THRESHOLD = 1e-20
# (include/caffe/layers/loss_layer.hpp; InfogainLoss, MultinomialLogisticLoss).


def _first_dims(x: Tensor, label: Tensor, layer: str, kind: str) -> None:
    # LossLayer::Reshape: CHECK_EQ(bottom[0]->shape(0), bottom[1]->shape(0)).
    if x.shape[0] != label.shape[0]:
        wrong_shape(layer, kind, "bottoms of shape " + dims(x) + " and " + dims(label)
                    + " differ in the first dimension",
                    "The data and label should have the same first dimension.")


def _label_count(x: Tensor, label: Tensor, axis: int, layer: str, kind: str) -> None:
    # SoftmaxWithLoss/InfogainLoss/Accuracy::Reshape: CHECK_EQ(outer_num_ * inner_num_,
    # bottom[1]->count()).
    want = _numel(x.shape[:axis]) * _numel(x.shape[axis + 1:])
    if want != label.numel():
        wrong_shape(layer, kind, "label of shape " + dims(label) + " holds "
                    + str(label.numel()) + " values; the prediction of shape " + dims(x)
                    + " with axis " + str(axis) + " needs outer * inner = " + str(want),
                    "Number of labels must match number of predictions")


def _valid(label: Tensor, ignore_label: Optional[int]) -> Tuple[Tensor, Tensor]:
    """(labels as int64, mask of the positions that count)."""
    lab = label.to(torch.int64)
    if ignore_label is None:
        return lab, torch.ones_like(lab, dtype=torch.bool)
    return lab, lab != ignore_label


def _normalizer(loss: Tensor, mode: str, outer: int, inner: int, valid: Optional[Tensor]
                ) -> Tensor:
    """LossLayer::GetNormalizer, then max(1, normalizer); forward and backward use it.
    `valid` None: every position counts."""
    if mode == "FULL" or (mode == "VALID" and valid is None):
        norm = torch.tensor(float(outer * inner), dtype=loss.dtype, device=loss.device)
    elif mode == "VALID" and valid is not None:
        norm = valid.sum().to(loss.dtype)
    elif mode == "BATCH_SIZE":
        norm = torch.tensor(float(outer), dtype=loss.dtype, device=loss.device)
    else:  # NONE
        norm = torch.tensor(1.0, dtype=loss.dtype, device=loss.device)
    return torch.clamp(norm, min=1.0)


def _normalize(loss: Tensor, mode: str, outer: int, inner: int, valid: Tensor) -> Tensor:
    return loss / _normalizer(loss, mode, outer, inner, valid)


def _label_log_probs(prob: Tensor, label: Tensor, axis: int, ignore_label: Optional[int]
                     ) -> Tuple[Tensor, Tensor, int, int]:
    """prob viewed as (outer, C, inner), label as (outer, inner); ignored labels (which may
    be out of range) are replaced by class 0 before indexing and masked afterwards."""
    picked, _, valid, outer, inner = _label_probs(prob, label, axis, ignore_label)
    return picked, valid, outer, inner


def _label_probs(prob: Tensor, label: Tensor, axis: int, ignore_label: Optional[int]
                 ) -> Tuple[Tensor, Tensor, Tensor, int, int]:
    """_label_log_probs with the label indices (outer, inner), ignored ones as class 0."""
    shape = list(prob.shape)
    outer, inner = _numel(shape[:axis]), _numel(shape[axis + 1:])
    p = prob.reshape(outer, shape[axis], inner)
    lab, valid = _valid(label.reshape(outer, inner), ignore_label)
    idx = torch.where(valid, lab, torch.zeros_like(lab))
    picked = p.gather(1, idx.unsqueeze(1)).squeeze(1)
    return picked, idx, valid, outer, inner


def _check_labels(x: Tensor, label: Tensor, axis: int, ignore_label: Optional[int],
                  layer: str, kind: str) -> None:
    """The fork's DCHECK_GE(label_value, 0) / DCHECK_LT(label_value, channels) on the
    labels that count, in eager mode only (a traced, compiled or torch.func-transformed
    program cannot branch on data; a release Caffe reads past the probabilities instead)."""
    if torch.compiler.is_compiling() or transformed() or label.numel() == 0 or label.is_meta:
        return
    low, high = torch.aminmax(label.reshape(-1).to(torch.int64))
    if int(low) >= 0 and int(high) < x.shape[axis]:
        return  # every label a class (the usual case: one reduction, no mask)
    lab, valid = _valid(label.reshape(-1), ignore_label)
    bad = lab[valid & ((lab < 0) | (lab >= x.shape[axis]))]
    if bad.numel():
        raise InputError(f"layer '{layer}' ({kind}): label {int(bad[0])} is not a class of "
                         f"the {x.shape[axis]} along axis {axis}; allowed: 0 to "
                         f"{x.shape[axis] - 1}" + ("" if ignore_label is None else
                                                   f", or ignore_label {ignore_label}"))


def _softmax_loss(x: Tensor, label: Tensor, axis: int, ignore_label: Optional[int],
                  normalization: str) -> Tuple[Tensor, Tensor]:
    prob = torch.softmax(x, axis)
    picked, valid, outer, inner = _label_log_probs(prob, label, axis, ignore_label)
    logp = torch.log(torch.clamp(picked, min=1.1754943508222875e-38))
    loss = -torch.where(valid, logp, torch.zeros_like(logp)).sum()
    return _normalize(loss, normalization, outer, inner, valid), prob


def _class_grad(prob: Tensor, label: Tensor, axis: int, ignore_label: Optional[int],
                normalization: str, loss: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The label indices and valid mask, both (outer, inner), ignored labels as class 0,
    and the normalizer: what the softmax losses' backward needs besides prob."""
    shape = list(prob.shape)
    outer, inner = _numel(shape[:axis]), _numel(shape[axis + 1:])
    lab, valid = _valid(label.reshape(outer, inner), ignore_label)
    idx = torch.where(valid, lab, torch.zeros_like(lab))
    return idx, valid, _normalizer(loss, normalization, outer, inner, valid)


class CaffeSoftmaxLoss(torch.autograd.Function):
    """SoftmaxWithLoss with softmax_loss_layer.cpp's Backward_cpu: prob - 1 at the label,
    0 at ignored positions, times the loss diff / normalizer.  This ignores the forward's
    FLT_MIN clamp and the diff of the probability top, as Caffe does."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, label: Tensor, axis: int, ignore_label: Optional[int],
                normalization: str) -> Tuple[Tensor, Tensor]:
        ctx.masked = ignore_label is not None
        if not ctx.masked:
            return CaffeSoftmaxLoss._every_label(ctx, x, label, axis, normalization)
        loss, prob = _softmax_loss(x, label, axis, ignore_label, normalization)
        idx, valid, norm = _class_grad(prob, label, axis, ignore_label, normalization, loss)
        ctx.save_for_backward(prob, idx, valid, norm)
        return loss, prob

    @staticmethod
    def _every_label(ctx: Any, x: Tensor, label: Tensor, axis: int, normalization: str
                     ) -> Tuple[Tensor, Tensor]:
        """The same arithmetic without the masks when no label is ignored (a classifier's
        loss): a third of the small ops, which are most of its time at LeNet's size."""
        prob = torch.softmax(x, axis)
        shape = list(prob.shape)
        outer, inner = _numel(shape[:axis]), _numel(shape[axis + 1:])
        idx = label.reshape(outer, 1, inner).to(torch.int64)
        picked = prob.reshape(outer, shape[axis], inner).gather(1, idx)
        norm = _normalizer(prob, normalization, outer, inner, None)
        loss = -torch.log(torch.clamp(picked, min=1.1754943508222875e-38)).sum() / norm
        ctx.save_for_backward(prob, idx, norm)
        return loss, prob

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor, d_prob: Optional[Tensor]
                 ) -> Tuple[Tensor, None, None, None, None]:
        if not ctx.masked:  # _every_label
            prob, idx, norm = ctx.saved_tensors
            dx = prob.reshape(idx.shape[0], -1, idx.shape[2]).clone()
            dx.scatter_add_(1, idx, torch.full_like(idx, -1, dtype=dx.dtype))
            return dx.mul_(d_loss / norm).reshape(prob.shape), None, None, None, None
        prob, idx, valid, norm = ctx.saved_tensors
        outer, inner = valid.shape
        dx = prob.reshape(outer, -1, inner).clone()
        mask = valid.to(dx.dtype).unsqueeze(1)
        dx.scatter_add_(1, idx.unsqueeze(1), -mask)
        dx = dx * mask * (d_loss / norm)
        return dx.reshape(prob.shape), None, None, None, None


@torch.fx.wrap
def softmax_loss(x: Tensor, label: Tensor, axis: int, ignore_label: Optional[int],
                 normalization: str, layer: str = "") -> Tensor:
    """SoftmaxWithLoss (softmax_loss_layer.cpp):
    -sum_valid log(max(p_label, FLT_MIN)) / normalizer."""
    loss, _ = softmax_loss_with_prob(x, label, axis, ignore_label, normalization, layer)
    return loss


@torch.fx.wrap
def softmax_loss_with_prob(x: Tensor, label: Tensor, axis: int, ignore_label: Optional[int],
                           normalization: str, layer: str = "") -> Tuple[Tensor, Tensor]:
    """SoftmaxWithLoss with its second top, the softmax probabilities."""
    _first_dims(x, label, layer, "SoftmaxWithLoss")
    _label_count(x, label, axis, layer, "SoftmaxWithLoss")
    if not torch.jit.is_scripting():
        _check_labels(x, label, axis, ignore_label, layer, "SoftmaxWithLoss")
        if caffe_grad(x):
            return CaffeSoftmaxLoss.apply(x, label, axis, ignore_label, normalization)
    return _softmax_loss(x, label, axis, ignore_label, normalization)


# -- SegNet's class-weighted SoftmaxWithLoss (alexgkendall/caffe-segnet) -------------------

def _weighted_softmax_loss(x: Tensor, label: Tensor, class_weighting: List[float], axis: int,
                           ignore_label: Optional[int], normalize: bool
                           ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(loss, prob, label indices, valid mask, per-position weight, normalizer): the
    fork's Forward_cpu with weight_by_label_freqs.  Its normalizer is the count of
    non-ignored positions (normalize) or outer_num_, never clamped: 0 / 0 when every
    label is ignored."""
    prob = torch.softmax(x, axis)
    picked, idx, valid, outer, inner = _label_probs(prob, label, axis, ignore_label)
    table = torch.tensor(class_weighting, dtype=x.dtype, device=x.device)
    weight = torch.where(valid, table[idx], torch.zeros_like(picked))
    logp = torch.log(torch.clamp(picked, min=1.1754943508222875e-38))
    loss = -(torch.where(valid, logp, torch.zeros_like(logp)) * weight).sum()
    if normalize:
        norm = valid.sum().to(loss.dtype)
    else:
        norm = torch.tensor(float(outer), dtype=loss.dtype, device=loss.device)
    return loss / norm, prob, idx, valid, weight, norm


class CaffeWeightedSoftmaxLoss(torch.autograd.Function):
    """SegNet's SoftmaxWithLoss Backward_cpu with weight_by_label_freqs: (prob - 1 at the
    label) times the label's class weight, 0 at ignored positions, times the loss diff /
    the normalizer (the FLT_MIN clamp and the probability top's diff play no part)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, label: Tensor, class_weighting: List[float], axis: int,
                ignore_label: Optional[int], normalize: bool) -> Tuple[Tensor, Tensor]:
        loss, prob, idx, valid, weight, norm = _weighted_softmax_loss(
            x, label, class_weighting, axis, ignore_label, normalize)
        ctx.save_for_backward(prob, idx, valid, weight, norm)
        return loss, prob

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor, d_prob: Optional[Tensor]
                 ) -> Tuple[Tensor, None, None, None, None, None]:
        prob, idx, valid, weight, norm = ctx.saved_tensors
        outer, inner = valid.shape
        dx = prob.reshape(outer, -1, inner).clone()
        mask = valid.to(dx.dtype).unsqueeze(1)
        dx.scatter_add_(1, idx.unsqueeze(1), -mask)
        dx = dx * mask * weight.unsqueeze(1) * (d_loss / norm)
        return dx.reshape(prob.shape), None, None, None, None, None


@torch.fx.wrap
def softmax_loss_weighted(x: Tensor, label: Tensor, class_weighting: List[float], axis: int,
                          ignore_label: Optional[int], normalize: bool, layer: str = ""
                          ) -> Tensor:
    """SegNet's SoftmaxWithLoss with loss_param.weight_by_label_freqs
    (alexgkendall/caffe-segnet softmax_loss_layer.cpp):
    -sum_valid w[label] log(max(p_label, FLT_MIN)) / (valid count, or N without normalize)."""
    loss, _ = softmax_loss_weighted_with_prob(x, label, class_weighting, axis, ignore_label,
                                              normalize, layer)
    return loss


@torch.fx.wrap
def softmax_loss_weighted_with_prob(x: Tensor, label: Tensor, class_weighting: List[float],
                                    axis: int, ignore_label: Optional[int], normalize: bool,
                                    layer: str = "") -> Tuple[Tensor, Tensor]:
    """The same with the second top, the softmax probabilities."""
    _first_dims(x, label, layer, "SoftmaxWithLoss")
    _label_count(x, label, axis, layer, "SoftmaxWithLoss")
    # Reshape: one weight per legacy channel (shape(1)), and one per class
    channels = x.shape[1] if x.dim() > 1 else 1
    if channels != len(class_weighting) or x.shape[axis] > len(class_weighting):
        wrong_shape(layer, "SoftmaxWithLoss", "the prediction of shape " + dims(x) + " with "
                    "axis " + str(axis) + " and " + str(len(class_weighting))
                    + " class_weighting values",
                    "Number of class weight values does not match the number of classes.")
    if not torch.jit.is_scripting():
        _check_labels(x, label, axis, ignore_label, layer, "SoftmaxWithLoss")
        if caffe_grad(x):
            return CaffeWeightedSoftmaxLoss.apply(x, label, class_weighting, axis,
                                                  ignore_label, normalize)
    loss, prob, _, _, _, _ = _weighted_softmax_loss(x, label, class_weighting, axis,
                                                    ignore_label, normalize)
    return loss, prob


@torch.fx.wrap
def infogain_loss(x: Tensor, label: Tensor, infogain: Tensor, axis: int,
                  ignore_label: Optional[int], normalization: str, layer: str = "") -> Tensor:
    """InfogainLoss (infogain_loss_layer.cpp): softmax over `axis`, then
    -sum_valid sum_l H[label, l] log(max(p_l, 1e-20)) / normalizer."""
    loss, _ = infogain_loss_with_prob(x, label, infogain, axis, ignore_label, normalization,
                                      layer)
    return loss


class CaffeInfogainLoss(torch.autograd.Function):
    """InfogainLoss with infogain_loss_layer.cpp's Backward_cpu: p_l sum_l' H[label, l'] -
    H[label, l], 0 at ignored positions, times the loss diff / normalizer (the forward's
    1e-20 clamp and the probability top's diff play no part).  Caffe refuses to
    backpropagate to H and to the labels: they get no gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, label: Tensor, infogain: Tensor, axis: int,
                ignore_label: Optional[int], normalization: str) -> Tuple[Tensor, Tensor]:
        loss, prob = _infogain_loss(x, label, infogain, axis, ignore_label, normalization)
        idx, valid, norm = _class_grad(prob, label, axis, ignore_label, normalization, loss)
        classes = prob.shape[axis]
        rows = infogain.reshape(classes, classes).to(x.dtype)[idx]  # (outer, inner, C)
        ctx.save_for_backward(prob, rows, valid, norm)
        return loss, prob

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor, d_prob: Optional[Tensor]
                 ) -> Tuple[Tensor, None, None, None, None, None]:
        prob, rows, valid, norm = ctx.saved_tensors
        outer, inner = valid.shape
        p = prob.reshape(outer, -1, inner)
        h = rows.transpose(1, 2)  # (outer, C, inner)
        dx = p * h.sum(1, keepdim=True) - h
        dx = dx * valid.to(dx.dtype).unsqueeze(1) * (d_loss / norm)
        return dx.reshape(prob.shape), None, None, None, None, None


@torch.fx.wrap
def infogain_loss_with_prob(x: Tensor, label: Tensor, infogain: Tensor, axis: int,
                            ignore_label: Optional[int], normalization: str,
                            layer: str = "") -> Tuple[Tensor, Tensor]:
    _first_dims(x, label, layer, "InfogainLoss")
    _label_count(x, label, axis, layer, "InfogainLoss")
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return CaffeInfogainLoss.apply(x, label, infogain, axis, ignore_label,
                                           normalization)
    return _infogain_loss(x, label, infogain, axis, ignore_label, normalization)


def _infogain_loss(x: Tensor, label: Tensor, infogain: Tensor, axis: int,
                   ignore_label: Optional[int], normalization: str) -> Tuple[Tensor, Tensor]:
    prob = torch.softmax(x, axis)
    shape = list(prob.shape)
    classes = shape[axis]
    outer, inner = _numel(shape[:axis]), _numel(shape[axis + 1:])
    logp = torch.log(torch.clamp(prob, min=1e-20)).reshape(outer, classes, inner)
    lab, valid = _valid(label.reshape(outer, inner), ignore_label)
    idx = torch.where(valid, lab, torch.zeros_like(lab))
    # Caffe never backpropagates to H ("Layer cannot backpropagate to infogain inputs").
    rows = infogain.detach().reshape(classes, classes).to(x.dtype)[idx]  # (outer, inner, C)
    per_item = (rows * logp.transpose(1, 2)).sum(2)
    loss = -torch.where(valid, per_item, torch.zeros_like(per_item)).sum()
    return _normalize(loss, normalization, outer, inner, valid), prob


@torch.fx.wrap
def sigmoid_cross_entropy_loss(x: Tensor, target: Tensor, ignore_label: Optional[int],
                               normalization: str, layer: str = "") -> Tensor:
    """SigmoidCrossEntropyLoss (sigmoid_cross_entropy_loss_layer.cpp), in Caffe's stable
    form -(x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0]))), summed over valid items."""
    _first_dims(x, target, layer, "SigmoidCrossEntropyLoss")
    if x.numel() != target.numel():
        wrong_shape(layer, "SigmoidCrossEntropyLoss", "bottoms of shape " + dims(x) + " and "
                    + dims(target) + " differ in count",
                    "SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count.")
    t = target.detach().reshape(x.shape).to(x.dtype)  # no diff for the target
    pos = (x >= 0).to(x.dtype)
    term = -(x * (t - pos) - torch.log(1 + torch.exp(x - 2 * x * pos)))
    _, valid = _valid(t, ignore_label)
    loss = torch.where(valid, term, torch.zeros_like(term)).sum()
    outer = x.shape[0]
    return _normalize(loss, normalization, outer, x.numel() // max(outer, 1), valid)


@torch.fx.wrap
def euclidean_loss(a: Tensor, b: Tensor, layer: str = "") -> Tensor:
    """EuclideanLoss (euclidean_loss_layer.cpp): sum((a - b)^2) / N / 2."""
    _first_dims(a, b, layer, "EuclideanLoss")
    if _numel(a.shape[1:]) != _numel(b.shape[1:]):
        wrong_shape(layer, "EuclideanLoss", "bottoms of shape " + dims(a) + " and " + dims(b)
                    + " differ in count(1)", "Inputs must have the same dimension.")
    d = a - b.reshape(a.shape)
    return (d * d).sum() / a.shape[0] / 2


@torch.fx.wrap
def hinge_loss(x: Tensor, label: Tensor, squared: bool, layer: str = "") -> Tensor:
    """HingeLoss (hinge_loss_layer.cpp): the label's score (an index into each sample's
    flattened count/N values) is negated, then max(0, 1 + t), L1 sum or L2 sum of squares,
    divided by N."""
    _first_dims(x, label, layer, "HingeLoss")
    num = x.shape[0]
    flat = x.reshape(num, -1)
    sign = torch.ones_like(flat)
    sign.scatter_(1, label.reshape(-1)[:num].to(torch.int64).unsqueeze(1), -1.0)
    margin = torch.clamp(1 + flat * sign, min=0)
    total = (margin * margin).sum() if squared else margin.sum()
    return total / num


class CaffeContrastiveLoss(torch.autograd.Function):
    """ContrastiveLoss with contrastive_loss_layer.cpp's Backward_cpu: +-d / N for similar
    pairs; for dissimilar ones where mdist > 0, -+d / N times (margin - dist) / (dist +
    1e-4) (legacy: times 1), where torch's derivative divides by dist.  No diff for sim."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, sim: Tensor, margin: float,
                legacy_version: bool) -> Tensor:
        ctx.margin, ctx.legacy_version = margin, legacy_version
        ctx.save_for_backward(a, b, sim)
        return _contrastive_loss(a, b, sim, margin, legacy_version)

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor) -> Tuple[Tensor, Tensor, None, None, None]:
        a, b, sim = ctx.saved_tensors
        num = a.shape[0]
        d = (a - b).reshape(num, -1)
        dist_sq = (d * d).sum(1, keepdim=True)
        similar = sim.reshape(-1)[:num].to(torch.int64).unsqueeze(1) != 0
        alpha = d_loss / num  # bottom 0's; bottom 1 gets the negation
        if ctx.legacy_version:
            mdist = ctx.margin - dist_sq
            beta = -alpha
        else:
            dist = torch.sqrt(dist_sq)
            mdist = ctx.margin - dist
            beta = -alpha * mdist / (dist + 1e-4)
        dissimilar = torch.where(mdist > 0, beta * d, torch.zeros_like(d))
        da = torch.where(similar, alpha * d, dissimilar)
        return da.reshape(a.shape), (-da).reshape(b.shape), None, None, None


@torch.fx.wrap
def contrastive_loss(a: Tensor, b: Tensor, sim: Tensor, margin: float,
                     legacy_version: bool, layer: str = "") -> Tensor:
    """ContrastiveLoss (contrastive_loss_layer.cpp): d^2 = |a_n - b_n|^2; similar pairs
    add d^2, dissimilar max(margin - d, 0)^2 (legacy: max(margin - d^2, 0)); sum / N / 2."""
    _first_dims(a, b, layer, "ContrastiveLoss")
    # LayerSetUp's checks, which Caffe's Reshape does not repeat (it would read past the
    # blobs): the two bottoms are (N, C, 1, 1) of one shape.
    if a.dim() < 2 or a.shape != b.shape or a.numel() != a.shape[0] * a.shape[1]:
        wrong_shape(layer, "ContrastiveLoss", "bottoms of shape " + dims(a) + " and "
                    + dims(b) + " are not two (N, C, 1, 1) blobs of one shape",
                    "bottom[0]->channels() == bottom[1]->channels()")
    if not torch.jit.is_scripting():
        if caffe_grad(a, b):
            return CaffeContrastiveLoss.apply(a, b, sim, margin, legacy_version)
    return _contrastive_loss(a, b, sim, margin, legacy_version)


def _contrastive_loss(a: Tensor, b: Tensor, sim: Tensor, margin: float,
                      legacy_version: bool) -> Tensor:
    num = a.shape[0]
    d = (a - b).reshape(num, -1)
    dist_sq = (d * d).sum(1)
    if legacy_version:
        dissimilar = torch.clamp(margin - dist_sq, min=0)
    else:
        gap = torch.clamp(margin - torch.sqrt(dist_sq), min=0)
        dissimilar = gap * gap
    similar = sim.reshape(-1)[:num].to(torch.int64) != 0
    return torch.where(similar, dist_sq, dissimilar).sum() / num / 2


class CaffeMultinomialLogisticLoss(torch.autograd.Function):
    """MultinomialLogisticLoss with its Backward_cpu: -loss diff / N / max(p, 1e-20) at
    each sample's label, 0 elsewhere, even where the forward's clamp hides p."""

    @staticmethod
    def forward(ctx: Any, prob: Tensor, label: Tensor) -> Tensor:
        ctx.save_for_backward(prob, label)
        return _multinomial_logistic_loss(prob, label)

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor) -> Tuple[Tensor, None]:
        prob, label = ctx.saved_tensors
        num = prob.shape[0]
        p = prob.reshape(num, -1)
        idx = label.reshape(-1)[:num].to(torch.int64).unsqueeze(1)
        picked = torch.clamp(p.gather(1, idx), min=1e-20)
        dx = torch.zeros_like(p).scatter_(1, idx, (-d_loss / num) / picked)
        return dx.reshape(prob.shape), None


@torch.fx.wrap
def multinomial_logistic_loss(prob: Tensor, label: Tensor, layer: str = "") -> Tensor:
    """MultinomialLogisticLoss (multinomial_logistic_loss_layer.cpp):
    -sum_n log(max(p[n, label_n], 1e-20)) / N, p viewed as (N, count/N)."""
    _first_dims(prob, label, layer, "MultinomialLogisticLoss")
    if label.numel() != label.shape[0]:  # Reshape: label channels, height, width all 1
        wrong_shape(layer, "MultinomialLogisticLoss", "label of shape " + dims(label)
                    + " is not one value per sample", "bottom[1]->channels() == 1")
    if not torch.jit.is_scripting():
        if caffe_grad(prob):
            return CaffeMultinomialLogisticLoss.apply(prob, label)
    return _multinomial_logistic_loss(prob, label)


def _multinomial_logistic_loss(prob: Tensor, label: Tensor) -> Tensor:
    num = prob.shape[0]
    p = prob.reshape(num, -1)
    idx = label.reshape(-1)[:num].to(torch.int64).unsqueeze(1)
    picked = p.gather(1, idx).squeeze(1)
    return -torch.log(torch.clamp(picked, min=1e-20)).sum() / num


def _accuracy(x: Tensor, label: Tensor, axis: int, top_k: int, ignore_label: Optional[int]
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    shape = list(x.shape)
    classes = shape[axis]
    outer, inner = _numel(shape[:axis]), _numel(shape[axis + 1:])
    scores = x.reshape(outer, classes, inner)
    lab, valid = _valid(label.reshape(outer, inner), ignore_label)
    idx = torch.where(valid, lab, torch.zeros_like(lab))
    true_score = scores.gather(1, idx.unsqueeze(1))
    # The true class counts itself, so ties with it count against the prediction.
    better = (scores >= true_score).sum(1) - 1
    correct = (better < top_k) & valid
    count = valid.sum().to(x.dtype)
    acc = torch.where(count > 0, correct.sum().to(x.dtype) / torch.clamp(count, min=1.0),
                      torch.zeros_like(count))
    return acc, correct, valid, idx


@torch.fx.wrap
def accuracy(x: Tensor, label: Tensor, axis: int, top_k: int, ignore_label: Optional[int],
             layer: str = "") -> Tensor:
    """Accuracy (accuracy_layer.cpp): the fraction of non-ignored positions whose label has
    fewer than top_k other classes scoring >= it; 0 when nothing counts."""
    _label_count(x, label, axis, layer, "Accuracy")
    acc, _, _, _ = _accuracy(x, label, axis, top_k, ignore_label)
    return acc


@torch.fx.wrap
def accuracy_per_class(x: Tensor, label: Tensor, axis: int, top_k: int,
                       ignore_label: Optional[int], layer: str = "") -> Tuple[Tensor, Tensor]:
    """Accuracy with its second top: per class, correct / occurrences (0 if absent)."""
    _label_count(x, label, axis, layer, "Accuracy")
    acc, correct, valid, idx = _accuracy(x, label, axis, top_k, ignore_label)
    classes = x.shape[axis]
    hits = torch.zeros(classes, dtype=x.dtype, device=x.device)
    seen = torch.zeros(classes, dtype=x.dtype, device=x.device)
    flat = idx.reshape(-1)
    hits.index_add_(0, flat, correct.reshape(-1).to(x.dtype))
    seen.index_add_(0, flat, valid.reshape(-1).to(x.dtype))
    per_class = torch.where(seen > 0, hits / torch.clamp(seen, min=1.0), torch.zeros_like(seen))
    return acc, per_class
