"""Caffe's learning-rate policies as a torch LRScheduler.

Training stage.  Mirrors SGDSolver::GetLearningRate (src/caffe/solvers/sgd_solver.cpp):
the seven `lr_policy` values, computed with Caffe's float (Dtype) and double mix, and
the `current_step_` state that `step` and `multistep` keep (saved in the solverstate).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ProtoError

__all__ = ["POLICIES", "CaffeLR"]

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def _f32(value: float) -> float:
    return float(np.float32(value))


def _check_policy(policy: str, *, gamma: float, stepsize: int, where: str) -> None:
    """The CHECKs GetLearningRate makes, made up front."""
    if policy not in POLICIES:
        raise ProtoError(f"{where}: lr_policy = {policy!r}: Unknown learning rate policy; "
                         f"allowed: {', '.join(POLICIES)}")
    if policy in ("step", "sigmoid") and stepsize <= 0:
        raise ProtoError(f"{where}: lr_policy {policy!r} needs stepsize > 0; "
                         f"stepsize = {stepsize}")
    if policy != "fixed" and policy != "poly" and _f32(gamma) < 0:
        raise ProtoError(f"{where}: lr_policy {policy!r} needs gamma >= 0; gamma = {np.float32(gamma)}")


def learning_rate(policy: str, it: int, current_step: int, *, base_lr: float,
                  gamma: float = 0.0, power: float = 0.0, stepsize: int = 0,
                  stepvalue: Sequence[int] = (), max_iter: int = 0,
                  where: str = "<solver>") -> tuple[float, int]:
    """SGDSolver::GetLearningRate at iteration `it` with Caffe's `current_step_`:
    returns (rate as a float32 value, the new current_step_)."""
    _check_policy(policy, gamma=gamma, stepsize=stepsize, where=where)
    base, g, pw = _f32(base_lr), _f32(gamma), _f32(power)
    step = current_step
    # pow(Dtype, int) and base_lr * double are doubles in C++; the rate is then a Dtype.
    if policy == "fixed":
        rate = base
    elif policy == "step":
        step = it // stepsize
        rate = base * math.pow(g, step)
    elif policy == "exp":
        rate = base * math.pow(g, it)
    elif policy == "inv":
        rate = base * math.pow(_f32(1.0 + _f32(g * _f32(it))), -pw)
    elif policy == "multistep":
        if step < len(stepvalue) and it >= stepvalue[step]:
            step += 1
        rate = base * math.pow(g, step)
    elif policy == "poly":
        rate = base * math.pow(_f32(1.0 - _f32(_f32(it) / _f32(max_iter))), pw)
    else:  # sigmoid
        rate = base * _f32(1.0 / _f32(1.0 + math.exp(_f32(-g * _f32(_f32(it) - stepsize)))))
    return _f32(rate), step


class CaffeLR(torch.optim.lr_scheduler.LRScheduler):
    """SGDSolver::GetLearningRate as a scheduler: sets every group's "lr" (Caffe's
    global rate; each group's lr_mult scales it inside the optimizer).

    The rate that `optimizer.step()` applies at Caffe iteration `it` is `rate(it)`;
    call `scheduler.step()` after `optimizer.step()` to move on to it + 1, as usual in
    torch.  `current_step` is Caffe's `current_step_` as the solverstate saves it (the
    value after the previous iteration's rate); `restore(iteration, current_step)`
    resumes from a solverstate.

    Args:
        optimizer: a caffe_fx.optim optimizer (any torch Optimizer works).
        policy: one of fixed, step, exp, inv, multistep, poly, sigmoid.
        base_lr, gamma, power, stepsize, stepvalue, max_iter: the SolverParameter fields.
        where: names the solver file in errors.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, policy: str = "fixed", *,
                 base_lr: float, gamma: float = 0.0, power: float = 0.0, stepsize: int = 0,
                 stepvalue: Sequence[int] = (), max_iter: int = 0,
                 where: str = "<solver>", last_epoch: int = -1) -> None:
        _check_policy(policy, gamma=gamma, stepsize=stepsize, where=where)
        self.policy = policy
        self.base_lr = float(base_lr)
        self._fields: dict[str, Any] = {
            "base_lr": float(base_lr), "gamma": float(gamma), "power": float(power),
            "stepsize": int(stepsize), "stepvalue": tuple(int(s) for s in stepvalue),
            "max_iter": int(max_iter), "where": where}
        self.current_step = 0
        self._after = 0  # current_step_ once rate(last_epoch) has been computed
        super().__init__(optimizer, last_epoch)

    def rate(self, it: int) -> float:
        """GetLearningRate(it) from Caffe's current state; like Caffe, `step` and
        `multistep` update that state (`multistep` moves on at most one step a call)."""
        value, self._after = learning_rate(self.policy, it, self._after, **self._fields)
        return value

    def get_lr(self) -> list[float]:  # type: ignore[override]
        self.current_step = self._after
        value = self.rate(self.last_epoch)
        return [value for _ in self.optimizer.param_groups]

    def restore(self, iteration: int, current_step: int) -> None:
        """Resumes at Caffe iteration `iteration` with the solverstate's current_step
        (SGDSolver::RestoreSolverState); the groups get rate(iteration)."""
        self.last_epoch = int(iteration)
        self.current_step = self._after = int(current_step)
        value = self.rate(self.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = value
        self._last_lr = [value for _ in self.optimizer.param_groups]
