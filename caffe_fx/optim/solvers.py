"""Caffe's six solvers as torch.optim.Optimizers: SGDSolver::ApplyUpdate, step for step.

Training stage.  Mirrors src/caffe/solvers/{sgd,nesterov,adagrad,rmsprop,adadelta,adam}
_solver.cpp (CPU paths): ClipGradients over every param, then per param Normalize
(/iter_size), Regularize (L2 or L1) and ComputeUpdateValue, then Blob::Update
(data -= diff).  Scalars are rounded to float32 where Caffe holds them in a Dtype.
SGD runs those steps in one pass per param (torch's fused SGD kernel) where that kernel
computes Caffe's update; its rounding differs from the separate passes' by at most an ulp
of the update (its products are not fused multiply-adds).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ProtoError

__all__ = ["SGD", "AdaDelta", "AdaGrad", "Adam", "CaffeOptimizer", "Nesterov", "RMSProp"]

_REGULARIZATIONS = ("L2", "L1")


def _f32(value: float) -> float:
    """A value as Caffe's Dtype (float) holds it."""
    return float(np.float32(value))


class CaffeOptimizer(torch.optim.Optimizer):
    """The part of SGDSolver every Caffe solver shares; subclasses give the update rule.

    Args:
        params: tensors or param groups, in Caffe's learnable_params_ order.  A group may
            set "lr_mult" and "decay_mult" (Caffe's per-blob ParamSpec; default 1, 1).
        lr: Caffe's global learning rate (the solver's rate, the same in every group;
            CaffeLR sets it each iteration).  The local rate is lr * lr_mult.
        momentum, weight_decay: the solver's fields; local decay = weight_decay * decay_mult.
        regularization: "L2" (diff += decay * data) or "L1" (diff += decay * sign(data)).
        clip_gradients: when >= 0, all diffs are scaled down so that their global L2 norm
            (over every param of every group) is at most this.
        iter_size: `.grad` holds the sum of this many forward/backward passes; it is
            divided by iter_size before the update.

    `step()` is SGDSolver::ApplyUpdate on the current `.grad`s.  Afterwards each `.grad`
    holds what Caffe leaves in the blob's diff: the value that was subtracted from the
    data.  A param whose `.grad` is None (no gradient reached it, or it does not require
    one, as compile() leaves blobs of lr_mult 0) gets the zero diff Caffe's
    ClearParamDiffs gives it: its history evolves as Caffe's does (weight decay still
    feeds AdaGrad's, RMSProp's, AdaDelta's and Adam's) and, with lr_mult 0, its data stays
    as it is.  `iteration` is Caffe's iter_ (+1 per step; Adam's bias correction uses it).
    """

    _history_sets = 1  # Caffe's history_ holds this many blobs per learnable param

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, regularization: str = "L2",
                 clip_gradients: float = -1.0, iter_size: int = 1, **rule: float) -> None:
        if regularization not in _REGULARIZATIONS:
            raise ProtoError(f"{type(self).__name__}: regularization = {regularization!r}; "
                             f"Unknown regularization type; allowed: 'L2', 'L1'")
        if int(iter_size) != iter_size or iter_size < 1:
            raise InputError(f"{type(self).__name__}: iter_size = {iter_size}; it must be an "
                             "integer >= 1")
        defaults = dict(lr=lr, lr_mult=1.0, decay_mult=1.0, momentum=momentum,
                        weight_decay=weight_decay, **rule)
        super().__init__(params, defaults)
        self.regularization = regularization
        self.clip_gradients = float(clip_gradients)
        self.iter_size = int(iter_size)
        self.iteration = 0
        # Caffe's learnable_params_ order, for history(); from_solver sets it when its
        # param groups (one per lr_mult/decay_mult) reorder the params.
        self.param_order: list[torch.Tensor] = [p for g in self.param_groups for p in g["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "param_order"):
            self.param_order.extend(param_group["params"])

    # --- SGDSolver::ApplyUpdate -------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One Caffe update (SGDSolver::ApplyUpdate) of every param from its `.grad`."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        entries = [(p, g) for g in self.param_groups for p in g["params"]]
        diffs = [p.grad if p.grad is not None else torch.zeros_like(p) for p, _ in entries]
        self._clip(diffs)
        self._apply(entries, diffs)
        self.iteration += 1
        return loss

    def _apply(self, entries: Sequence[tuple[torch.Tensor, dict[str, Any]]],
               diffs: Sequence[torch.Tensor]) -> None:
        """Normalize, Regularize, ComputeUpdateValue and Net::Update, param by param."""
        for (p, group), diff in zip(entries, diffs):
            if self.iter_size != 1:  # Normalize
                diff.mul_(_f32(1.0 / self.iter_size))
            local_decay = self._local_decay(group)
            if local_decay:  # Regularize
                if self.regularization == "L2":
                    diff.add_(p.detach(), alpha=local_decay)
                else:
                    diff.add_(torch.sign(p.detach()), alpha=local_decay)
            self._update_value(p, diff, group, self.state[p], self._local_rate(group))
            p.sub_(diff)  # Net::Update: data -= diff

    @staticmethod
    def _local_decay(group: dict[str, Any]) -> float:
        return _f32(_f32(group["weight_decay"]) * _f32(group["decay_mult"]))

    @staticmethod
    def _local_rate(group: dict[str, Any]) -> float:
        return _f32(_f32(group["lr"]) * _f32(group["lr_mult"]))

    def _clip(self, diffs: Sequence[torch.Tensor]) -> None:
        """SGDSolver::ClipGradients: the global L2 norm over every learnable param."""
        if self.clip_gradients < 0 or not diffs:
            return
        sumsq = torch.zeros((), dtype=torch.float32)
        for d in diffs:
            sumsq += (d.float() * d.float()).sum().cpu()
        norm = _f32(math.sqrt(float(sumsq)))
        clip = _f32(self.clip_gradients)
        if norm > clip:
            scale = _f32(clip / norm)
            for d in diffs:
                d.mul_(scale)

    def _update_value(self, p: torch.Tensor, diff: torch.Tensor, group: dict[str, Any],
                      state: dict[str, Any], rate: float) -> None:
        """ComputeUpdateValue: turns `diff` (in place) into the value data loses."""
        raise NotImplementedError

    @staticmethod
    def _history(state: dict[str, Any], p: torch.Tensor, key: str = "history") -> torch.Tensor:
        if key not in state:
            state[key] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        return state[key]

    # --- the solverstate's history ----------------------------------------------------
    def _history_keys(self) -> tuple[str, ...]:
        return ("history", "history2")[:self._history_sets]

    def history(self) -> list[torch.Tensor]:
        """Caffe's history_ blobs, in SolverState order: one per param (Caffe's
        learnable_params_ order), then for AdaDelta and Adam a second one per param."""
        return [self._history(self.state[p], p, key).detach()
                for key in self._history_keys() for p in self.param_order]

    @torch.no_grad()
    def load_history(self, arrays: Sequence[np.ndarray | torch.Tensor]) -> None:
        """Copies a solverstate's history blobs in (SGDSolver::RestoreSolverState); the
        count and every shape must match (a blob of the same count may differ in shape
        only as Blob::FromProto allows: legacy 4-D shapes of the same count)."""
        slots = [(key, p) for key in self._history_keys() for p in self.param_order]
        if len(arrays) != len(slots):
            raise InputError(
                f"{type(self).__name__}.load_history: Incorrect length of history blobs: "
                f"{len(arrays)} given, {len(slots)} expected ({self._history_sets} per "
                f"learnable param, {len(self.param_order)} params)")
        tensors = []
        for i, ((key, p), array) in enumerate(zip(slots, arrays)):
            t = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor)
                                else array)
            if tuple(t.shape) != tuple(p.shape):
                if t.numel() != p.numel() or t.dim() != 4:
                    raise InputError(
                        f"{type(self).__name__}.load_history: history blob {i} has shape "
                        f"{list(t.shape)}; expected {list(p.shape)} (the param's shape)")
                t = t.reshape(p.shape)
            tensors.append(t)
        for (key, p), t in zip(slots, tensors):
            self._history(self.state[p], p, key).copy_(t)


class SGD(CaffeOptimizer):
    """Caffe's SGD (sgd_solver.cpp): history = momentum*history + local_rate*diff;
    diff = history.  The learning rate sits inside the momentum history, unlike
    torch.optim.SGD."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, regularization: str = "L2",
                 clip_gradients: float = -1.0, iter_size: int = 1) -> None:
        super().__init__(params, lr, momentum, weight_decay, regularization, clip_gradients,
                         iter_size)

    def _update_value(self, p, diff, group, state, rate):
        h = self._history(state, p)
        h.mul_(_f32(group["momentum"])).add_(diff, alpha=rate)
        diff.copy_(h)

    def _apply(self, entries, diffs):
        """The update in one pass over each param where torch's fused SGD kernel computes
        Caffe's: with lr 1 and dampening 1 - local_rate its momentum buffer is Caffe's
        history (h = momentum*h + local_rate*(diff + local_decay*data)) and data -= h.  On
        CaffeNet's 61M weights that is 48 ms for the five passes' 83 (2 CPU cores).  The
        kernel needs dense contiguous CPU tensors, L2, momentum != 0 and a local rate that
        1 - (1 - rate) gives back exactly in float32; any other param takes the
        param-by-param path."""
        buckets: dict[tuple[int, torch.dtype], list[int]] = {}
        rest = []
        fused_rule = {id(g): self._fused_rule(g) for g in self.param_groups}
        for i, ((p, group), diff) in enumerate(zip(entries, diffs)):
            if fused_rule[id(group)] and self._fused_layout(p, diff):
                buckets.setdefault((id(group), p.dtype), []).append(i)
            else:
                rest.append(i)
        for members in buckets.values():
            group = entries[members[0]][1]
            params = [entries[i][0] for i in members]
            grads = [diffs[i] for i in members]
            histories = [self._history(self.state[p], p) for p in params]
            if self.iter_size != 1:  # Normalize
                torch._foreach_mul_(grads, _f32(1.0 / self.iter_size))
            torch._fused_sgd_(params, grads, histories, weight_decay=self._local_decay(group),
                              momentum=_f32(group["momentum"]), lr=1.0,
                              dampening=1.0 - self._local_rate(group), nesterov=False,
                              maximize=False, is_first_step=False)
            # The kernel writes through data pointers without bumping the version counters
            # (torch 2.13); caches keyed on them (onednn's prepacked weights) must see it.
            torch.autograd.graph.increment_version(params + histories)
            torch._foreach_copy_(grads, histories)  # the diff Caffe leaves: the update
        if rest:
            super()._apply([entries[i] for i in rest], [diffs[i] for i in rest])

    def _fused_rule(self, group: dict[str, Any]) -> bool:
        """Whether the fused kernel computes this group's update rule."""
        rate = self._local_rate(group)
        return (hasattr(torch, "_fused_sgd_")  # private to torch (2.4 on)
                and self.regularization == "L2" and _f32(group["momentum"]) != 0
                and _f32(1.0 - (1.0 - rate)) == rate)

    def _fused_layout(self, p: torch.Tensor, diff: torch.Tensor) -> bool:
        """Whether the kernel, which walks memory in order, can take these tensors."""
        history = self.state[p].get("history")
        return (p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64)
                and not p.is_sparse and p.is_contiguous() and diff.is_contiguous()
                and diff.dtype == p.dtype and diff.device == p.device
                and (history is None or history.is_contiguous()))


class Nesterov(CaffeOptimizer):
    """Caffe's Nesterov (nesterov_solver.cpp): h' = momentum*h + local_rate*diff;
    diff = (1+momentum)*h' - momentum*h."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, regularization: str = "L2",
                 clip_gradients: float = -1.0, iter_size: int = 1) -> None:
        super().__init__(params, lr, momentum, weight_decay, regularization, clip_gradients,
                         iter_size)

    def _update_value(self, p, diff, group, state, rate):
        m = _f32(group["momentum"])
        h = self._history(state, p)
        previous = h.clone()
        h.mul_(m).add_(diff, alpha=rate)
        diff.copy_(h.mul(_f32(1.0 + m)).add_(previous, alpha=-m))


class AdaGrad(CaffeOptimizer):
    """Caffe's AdaGrad (adagrad_solver.cpp): history += diff^2;
    diff = local_rate * diff / (sqrt(history) + delta).  Caffe refuses momentum != 0."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, regularization: str = "L2",
                 clip_gradients: float = -1.0, iter_size: int = 1, delta: float = 1e-8) -> None:
        if momentum != 0:
            raise ProtoError(f"AdaGrad: momentum = {momentum}; Momentum cannot be used with "
                             "AdaGrad (it must be 0)")
        super().__init__(params, lr, momentum, weight_decay, regularization, clip_gradients,
                         iter_size, delta=delta)

    def _update_value(self, p, diff, group, state, rate):
        h = self._history(state, p)
        h.add_(diff * diff)
        diff.div_(h.sqrt().add_(_f32(group["delta"]))).mul_(rate)


class RMSProp(CaffeOptimizer):
    """Caffe's RMSProp (rmsprop_solver.cpp): history = rms_decay*history +
    (1-rms_decay)*diff^2; diff = local_rate * diff / (sqrt(history) + delta).  Caffe
    refuses momentum != 0 and rms_decay outside [0, 1)."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, regularization: str = "L2",
                 clip_gradients: float = -1.0, iter_size: int = 1, delta: float = 1e-8,
                 rms_decay: float = 0.99) -> None:
        if momentum != 0:
            raise ProtoError(f"RMSProp: momentum = {momentum}; Momentum cannot be used with "
                             "RMSProp (it must be 0)")
        if not 0 <= _f32(rms_decay) < 1:
            raise ProtoError(f"RMSProp: rms_decay = {rms_decay}; it must be in [0, 1)")
        super().__init__(params, lr, momentum, weight_decay, regularization, clip_gradients,
                         iter_size, delta=delta, rms_decay=rms_decay)

    def _update_value(self, p, diff, group, state, rate):
        decay = _f32(group["rms_decay"])
        h = self._history(state, p)
        h.mul_(decay).add_(diff * diff, alpha=_f32(1.0 - decay))
        diff.div_(h.sqrt().add_(_f32(group["delta"]))).mul_(rate)


class AdaDelta(CaffeOptimizer):
    """Caffe's AdaDelta (adadelta_solver.cpp): h = m*h + (1-m)*diff^2;
    u = diff * sqrt((h_upd + delta) / (h + delta)); h_upd = m*h_upd + (1-m)*u^2;
    diff = local_rate * u.  Two history sets (gradients, then updates)."""

    _history_sets = 2

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, regularization: str = "L2",
                 clip_gradients: float = -1.0, iter_size: int = 1, delta: float = 1e-8) -> None:
        super().__init__(params, lr, momentum, weight_decay, regularization, clip_gradients,
                         iter_size, delta=delta)

    def _update_value(self, p, diff, group, state, rate):
        m, delta = _f32(group["momentum"]), _f32(group["delta"])
        grads, updates = self._history(state, p), self._history(state, p, "history2")
        grads.mul_(m).add_(diff * diff, alpha=_f32(1.0 - m))
        ratio = (updates + delta).div_(grads + delta).sqrt_()
        diff.mul_(ratio)
        updates.mul_(m).add_(diff * diff, alpha=_f32(1.0 - m))
        diff.mul_(rate)


class Adam(CaffeOptimizer):
    """Caffe's Adam (adam_solver.cpp): m = b1*m + (1-b1)*diff; v = b2*v + (1-b2)*diff^2;
    diff = local_rate * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + delta), t = iteration + 1
    (b1 = momentum, b2 = momentum2; delta is added to sqrt(v), not to the corrected v).
    Two history sets (m, then v)."""

    _history_sets = 2

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, regularization: str = "L2",
                 clip_gradients: float = -1.0, iter_size: int = 1, delta: float = 1e-8,
                 momentum2: float = 0.999) -> None:
        super().__init__(params, lr, momentum, weight_decay, regularization, clip_gradients,
                         iter_size, delta=delta, momentum2=momentum2)

    def _update_value(self, p, diff, group, state, rate):
        b1, b2 = _f32(group["momentum"]), _f32(group["momentum2"])
        t = self.iteration + 1
        # pow(Dtype, int) is a double in C++; the correction is then stored as a Dtype.
        correction = _f32(math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t))
        m, v = self._history(state, p), self._history(state, p, "history2")
        m.mul_(b1).add_(diff, alpha=_f32(1.0 - b1))
        v.mul_(b2).add_(diff * diff, alpha=_f32(1.0 - b2))
        diff.copy_(m / v.sqrt().add_(_f32(group["delta"]))).mul_(_f32(rate * correction))
