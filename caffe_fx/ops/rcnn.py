"""Caffe-exact functionals for the R-CNN forks' layers, used by lowering/layers/rcnn_losses.py
and (Dropout's scale_train) lowering/layers/neuron.py.

Sources, each named per function:
- rbgirshick/caffe-fast-rcnn, branch fast-rcnn: src/caffe/layers/smooth_L1_loss_layer.cu
  (2 or 3 bottoms; GPU code only, Forward_cpu is NOT_IMPLEMENTED);
- branch faster-rcnn (py-faster-rcnn), also ppengtang/caffe's smooth_l1_loss_layer.cu:
  2 or 4 bottoms and smooth_l1_loss_param.sigma;
- ppengtang/caffe (OICR): weighted_softmax_loss_layer.cpp, global_sum_pooling_layer.cpp,
  multi_class_cross_entropy_loss_layer.cpp, multi_class_sigmoid_cross_entropy_loss_layer.cpp
  and dropout_layer.cpp (scale_train, as in the faster-rcnn branch).

Where Caffe's backward is not the derivative of its forward, an autograd Function runs
Caffe's formula (see ops/caffe_grad.py for when).  Labels, weights and the SmoothL1 weight
bottoms never get a gradient: those layers do not backpropagate to them.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import constants
from ._shape_check import dims, wrong_shape
from .caffe_grad import caffe_grad
from .loss import _first_dims, _label_count, _label_log_probs, _normalizer, _numel, _valid


# ---------------------------------------------------------------- SmoothL1Loss

def _smooth_l1(d: Tensor, sigma2: float) -> Tensor:
    """SmoothL1Forward: 0.5 sigma2 d^2 where |d| < 1 / sigma2, else |d| - 0.5 / sigma2."""
    a = d.abs()
    return torch.where(a < 1.0 / sigma2, 0.5 * sigma2 * d * d, a - 0.5 / sigma2)


def _same_count(a: Tensor, b: Tensor, layer: str) -> None:
    # Reshape: CHECK_EQ of channels, height and width (num by LossLayer::Reshape).
    if a.numel() != b.numel() or a.shape[0] != b.shape[0]:
        wrong_shape(layer, "SmoothL1Loss", "bottoms of shape " + dims(a) + " and " + dims(b)
                    + " differ", "bottom[0]->channels() == bottom[i]->channels()")


@torch.fx.wrap
def smooth_l1_loss(pred: Tensor, target: Tensor, sigma2: float, layer: str = "") -> Tensor:
    """SmoothL1Loss with 2 bottoms (either branch): sum f(pred - target) / num.  Its
    backward, +-f'(d) / num to both bottoms, is the derivative."""
    _same_count(pred, target, layer)
    d = pred - target.reshape(pred.shape)
    return _smooth_l1(d, sigma2).sum() / pred.shape[0]


class CaffeSmoothL1Weighted(torch.autograd.Function):
    """Fast R-CNN's 3-bottom SmoothL1Loss backward (fast-rcnn branch's Backward_gpu):
    +-f'(w (pred - target)) / num, without the factor w that the derivative has (the same
    for the 0/1 weights Fast R-CNN uses).  No diff for the weights."""

    @staticmethod
    def forward(ctx: Any, pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        d = weight.reshape(pred.shape) * (pred - target.reshape(pred.shape))
        ctx.save_for_backward(d)
        ctx.target_shape = target.shape
        return _smooth_l1(d, 1.0).sum() / pred.shape[0]

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor) -> Tuple[Tensor, Tensor, None]:
        (d,) = ctx.saved_tensors
        slope = torch.where(d.abs() < 1.0, d, torch.sign(d)) * (d_loss / d.shape[0])
        return slope, (-slope).reshape(ctx.target_shape), None


@torch.fx.wrap
def smooth_l1_loss_weighted(pred: Tensor, target: Tensor, weight: Tensor,
                            layer: str = "") -> Tensor:
    """Fast R-CNN's SmoothL1Loss (bbox_pred, bbox_targets, bbox_loss_weights):
    sum f(w (pred - target)) / num with f at sigma 1."""
    _same_count(pred, target, layer)
    _same_count(pred, weight, layer)
    if not torch.jit.is_scripting():
        if caffe_grad(pred, target):
            return CaffeSmoothL1Weighted.apply(pred, target, weight.detach())
    d = weight.detach().reshape(pred.shape) * (pred - target.reshape(pred.shape))
    return _smooth_l1(d, 1.0).sum() / pred.shape[0]


@torch.fx.wrap
def smooth_l1_loss_in_out(pred: Tensor, target: Tensor, inside: Tensor, outside: Tensor,
                          sigma2: float, layer: str = "") -> Tensor:
    """py-faster-rcnn's SmoothL1Loss (pred, targets, inside_weights, outside_weights):
    sum w_out f_sigma(w_in (pred - target)) / num.  Its backward, +-w_in w_out
    f'_sigma(d) / num, is the derivative; the weights get none."""
    _same_count(pred, target, layer)
    _same_count(pred, inside, layer)
    _same_count(pred, outside, layer)
    w_in = inside.detach().reshape(pred.shape)
    w_out = outside.detach().reshape(pred.shape)
    d = w_in * (pred - target.reshape(pred.shape))
    return (w_out * _smooth_l1(d, sigma2)).sum() / pred.shape[0]


# ---------------------------------------------------------------- WeightedSoftmaxWithLoss

def _sample_weights(weight: Tensor, outer: int, inner: int) -> Tensor:
    """cls_loss_weights[i]: the weights' first `outer` values, one per (outer, inner) row."""
    return weight.detach().reshape(-1)[:outer].unsqueeze(1).expand(outer, inner)


def _weighted_softmax_loss(x: Tensor, label: Tensor, weight: Tensor, axis: int,
                           ignore_label: Optional[int], normalization: str
                           ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(loss, prob, per-position weights, counted mask, normalizer)."""
    prob = torch.softmax(x, axis)
    picked, valid, outer, inner = _label_log_probs(prob, label, axis, ignore_label)
    w = _sample_weights(weight, outer, inner).to(x.dtype)
    # VALID counts the non-ignored positions whose weight is > 1e-12 (compared in double).
    counted = valid & (w.to(torch.float64) > 1e-12)
    logp = torch.log(torch.clamp(picked, min=constants.FLT_MIN))
    loss = -torch.where(valid, w * logp, torch.zeros_like(logp)).sum()
    norm = _normalizer(loss, normalization, outer, inner, counted)
    return loss / norm, prob, w, valid, norm


class CaffeWeightedSoftmaxLoss(torch.autograd.Function):
    """WeightedSoftmaxWithLoss's Backward_cpu: (prob - 1 at the label) w_i, 0 at ignored
    positions, times the loss diff / normalizer; the FLT_MIN clamp plays no part."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, label: Tensor, weight: Tensor, axis: int,
                ignore_label: Optional[int], normalization: str) -> Tensor:
        loss, prob, w, valid, norm = _weighted_softmax_loss(x, label, weight, axis,
                                                            ignore_label, normalization)
        lab, _ = _valid(label.reshape(valid.shape), ignore_label)
        idx = torch.where(valid, lab, torch.zeros_like(lab))
        ctx.save_for_backward(prob, idx, valid, w, norm)
        return loss

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor) -> Tuple[Tensor, None, None, None, None, None]:
        prob, idx, valid, w, norm = ctx.saved_tensors
        outer, inner = valid.shape
        dx = prob.reshape(outer, -1, inner).clone()
        mask = valid.to(dx.dtype).unsqueeze(1)
        dx.scatter_add_(1, idx.unsqueeze(1), -mask)
        dx = dx * (mask * w.unsqueeze(1)) * (d_loss / norm)
        return dx.reshape(prob.shape), None, None, None, None, None


@torch.fx.wrap
def weighted_softmax_loss(x: Tensor, label: Tensor, weight: Tensor, axis: int,
                          ignore_label: Optional[int], normalization: str,
                          layer: str = "") -> Tensor:
    """WeightedSoftmaxWithLoss (ppengtang/caffe weighted_softmax_loss_layer.cpp):
    -sum_valid w_i log(max(p_label, FLT_MIN)) / normalizer, w_i the weight of outer row i;
    VALID divides by the count of non-ignored positions with w_i > 1e-12 (at least 1)."""
    _first_dims(x, label, layer, "WeightedSoftmaxWithLoss")
    _label_count(x, label, axis, layer, "WeightedSoftmaxWithLoss")
    outer = _numel(x.shape[:axis])
    if weight.dim() == 0 or weight.shape[0] != outer:
        wrong_shape(layer, "WeightedSoftmaxWithLoss", "weights of shape " + dims(weight)
                    + " for " + str(outer) + " outer rows", "outer_num_ == bottom[2]->num()")
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return CaffeWeightedSoftmaxLoss.apply(x, label, weight, axis, ignore_label,
                                                  normalization)
    loss, _, _, _, _ = _weighted_softmax_loss(x, label, weight, axis, ignore_label,
                                              normalization)
    return loss


# ---------------------------------------------------------------- GlobalSumPooling

@torch.fx.wrap
def global_sum_pooling(x: Tensor, layer: str = "") -> Tensor:
    """GlobalSumPooling (ppengtang/caffe global_sum_pooling_layer.cpp): the sum over axis
    0, shape (1, ...); its backward copies the top diff to every item (the derivative)."""
    if x.dim() < 2:
        wrong_shape(layer, "GlobalSumPooling", "bottom of shape " + dims(x) + " has fewer "
                    "than 2 axes", "Number of axes of bottom blob must be >=2.")
    return x.sum(0, keepdim=True)


# ---------------------------------------------------------------- multi-label losses

def _per_class(x: Tensor, label: Tensor, layer: str, kind: str) -> Tuple[Tensor, Tensor]:
    """Both bottoms as (N, C), C = channels(): the layers index i * channels + c."""
    num = x.shape[0]
    channels = x.shape[1] if x.dim() > 1 else 1
    _first_dims(x, label, layer, kind)
    if x.numel() != num * channels or label.numel() != num * channels:
        wrong_shape(layer, kind, "bottoms of shape " + dims(x) + " and " + dims(label)
                    + " are not num * channels values each",
                    "Number of labels must match number of predictions.")
    return x.reshape(num, channels), label.detach().reshape(num, channels).to(x.dtype)


def _mce(p: Tensor, y: Tensor) -> Tensor:
    # The clamp in Dtype: for float, 1 - 1e-10 is 1.0f, so p = 1 gives log(0).
    t = torch.clamp(p, min=1e-10, max=1 - 1e-10)
    return -(y * torch.log(t) + (1.0 - y) * torch.log(1 - t)).sum() / p.shape[0]


class CaffeMulticlassCrossEntropyLoss(torch.autograd.Function):
    """Its Backward_cpu: (t - y) / (C t (1 - t)) / N times the loss diff, t the clamped
    probability: 1/C times the forward's derivative, and not 0 where the clamp holds."""

    @staticmethod
    def forward(ctx: Any, prob: Tensor, label: Tensor) -> Tensor:
        ctx.save_for_backward(prob, label)
        return _mce(prob, label)

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor) -> Tuple[Tensor, None]:
        p, y = ctx.saved_tensors
        num, channels = p.shape
        t = torch.clamp(p, min=1e-10, max=1 - 1e-10)
        dx = (t - y) / (channels * t * (1 - t))
        return dx * (d_loss / num), None


@torch.fx.wrap
def multiclass_cross_entropy_loss(prob: Tensor, label: Tensor, layer: str = "") -> Tensor:
    """MulticlassCrossEntropyLoss (ppengtang/caffe multi_class_cross_entropy_loss_layer.cpp)
    on probabilities: -sum(y log t + (1 - y) log(1 - t)) / N, t = p clamped to
    [1e-10, 1 - 1e-10] (in float the top is 1.0: p = 1 gives inf, or nan where y = 1)."""
    p, y = _per_class(prob, label, layer, "MulticlassCrossEntropyLoss")
    if not torch.jit.is_scripting():
        if caffe_grad(prob):
            return CaffeMulticlassCrossEntropyLoss.apply(p, y)
    return _mce(p, y)


def _msce(z: Tensor, y: Tensor) -> Tensor:
    # Caffe's naive form: exp(-z) overflows for z < -88 in float and the loss is inf.
    return (torch.log(1 + torch.exp(-z)) + (1.0 - y) * z).sum() / z.shape[0]


class CaffeMulticlassSigmoidCrossEntropyLoss(torch.autograd.Function):
    """Its Backward_cpu: (sigmoid(z) - y) / C / N times the loss diff (the extra 1/C)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, label: Tensor) -> Tensor:
        ctx.save_for_backward(z, label)
        return _msce(z, label)

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, d_loss: Tensor) -> Tuple[Tensor, None]:
        z, y = ctx.saved_tensors
        num, channels = z.shape
        dx = (1.0 / (1 + torch.exp(-z)) - y) / channels
        return dx * (d_loss / num), None


@torch.fx.wrap
def multiclass_sigmoid_cross_entropy_loss(x: Tensor, label: Tensor, layer: str = "") -> Tensor:
    """MulticlassSigmoidCrossEntropyLoss (ppengtang/caffe
    multi_class_sigmoid_cross_entropy_loss_layer.cpp) on logits:
    sum(log(1 + exp(-z)) + (1 - y) z) / N."""
    z, y = _per_class(x, label, layer, "MulticlassSigmoidCrossEntropyLoss")
    if not torch.jit.is_scripting():
        if caffe_grad(x):
            return CaffeMulticlassSigmoidCrossEntropyLoss.apply(z, y)
    return _msce(z, y)


# ---------------------------------------------------------------- Dropout scale_train

@torch.fx.wrap
def dropout_unscaled(x: Tensor, ratio: float) -> Tensor:
    """TRAIN Dropout with scale_train: false (dropout_layer.cpp): x * mask, the mask
    Bernoulli(1 - ratio) (torch's random numbers, not Caffe's), without 1 / (1 - ratio)."""
    return x * (torch.rand_like(x) >= ratio).to(x.dtype)


@torch.fx.wrap
def dropout_test_scale(x: Tensor, factor: float) -> Tensor:
    """TEST Dropout with scale_train: false: caffe_scal by 1 / scale_ = 1 - ratio."""
    return x * factor
