"""Caffe's learning-rate policies as a torch LRScheduler.

Training stage.  Mirrors SGDSolver::GetLearningRate (src/caffe/solvers/sgd_solver.cpp):
BVLC's seven `lr_policy` values and the SSD fork's "plateau" (weiliu89/caffe, branch
ssd), computed with Caffe's float (Dtype) and double mix, and the state they keep:
`current_step_` (step, multistep, plateau) and plateau's `minimum_loss_` /
`iter_last_event_` (include/caffe/sgd_solvers.hpp), all saved in the solverstate.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ProtoError, together

__all__ = ["FLT_MAX", "POLICIES", "CaffeLR", "plateau_update"]

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "plateau")
# SGDSolver::PreSolve starts minimum_loss_ at std::numeric_limits<float>::max().
FLT_MAX = float(np.finfo(np.float32).max)


def _f32(value: float) -> float:
    return float(np.float32(value))


def policy_problems(policy: str, *, gamma: float, stepsize: int, where: str,
                    plateau_winsize: Sequence[int] = ()) -> list[ProtoError]:
    """The CHECKs GetLearningRate makes, made up front, and the plateau windows the SSD
    fork takes without a check but cannot mean: none at all (the rate would never move)
    or one <= 0 (the rate would drop at every iteration)."""
    if policy not in POLICIES:
        return [ProtoError(f"{where}: lr_policy = {policy!r}: Unknown learning rate policy; "
                           f"allowed: {', '.join(POLICIES)}")]
    problems = []
    if policy in ("step", "sigmoid") and stepsize <= 0:
        problems.append(ProtoError(f"{where}: lr_policy {policy!r} needs stepsize > 0; "
                                   f"stepsize = {stepsize}"))
    if policy != "fixed" and policy != "poly" and _f32(gamma) < 0:
        problems.append(ProtoError(f"{where}: lr_policy {policy!r} needs gamma >= 0; "
                                   f"gamma = {np.float32(gamma)}"))
    if policy == "plateau":
        if not plateau_winsize:
            problems.append(ProtoError(
                f"{where}: lr_policy 'plateau' needs at least one plateau_winsize (the "
                "iterations without a new minimum loss before each drop); none given"))
        bad = [(i, w) for i, w in enumerate(plateau_winsize) if w <= 0]
        if bad:
            i, w = bad[0]
            problems.append(ProtoError(f"{where}: lr_policy 'plateau' needs every "
                                       f"plateau_winsize > 0; plateau_winsize[{i}] = {w}"))
    return problems


def _check_policy(policy: str, *, gamma: float, stepsize: int, where: str,
                  plateau_winsize: Sequence[int] = ()) -> None:
    problems = policy_problems(policy, gamma=gamma, stepsize=stepsize, where=where,
                               plateau_winsize=plateau_winsize)
    if problems:
        raise together(problems, where, "solver")


def learning_rate(policy: str, it: int, current_step: int, *, base_lr: float,
                  gamma: float = 0.0, power: float = 0.0, stepsize: int = 0,
                  stepvalue: Sequence[int] = (), max_iter: int = 0,
                  plateau_winsize: Sequence[int] = (),
                  where: str = "<solver>") -> tuple[float, int]:
    """SGDSolver::GetLearningRate at iteration `it` with Caffe's `current_step_`:
    returns (rate as a float32 value, the new current_step_).  For "plateau" this is the
    rate of `current_step` as it stands; plateau_update moves it on with the loss."""
    _check_policy(policy, gamma=gamma, stepsize=stepsize, where=where,
                  plateau_winsize=plateau_winsize)
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
    elif policy == "plateau":
        rate = base * math.pow(g, step)
    elif policy == "poly":
        rate = base * math.pow(_f32(1.0 - _f32(_f32(it) / _f32(max_iter))), pw)
    else:  # sigmoid
        rate = base * _f32(1.0 / _f32(1.0 + math.exp(_f32(-g * _f32(_f32(it) - stepsize)))))
    return _f32(rate), step


def plateau_update(it: int, current_step: int, smoothed_loss: float, minimum_loss: float,
                   iter_last_event: int, plateau_winsize: Sequence[int]
                   ) -> tuple[int, float, int]:
    """The SSD fork's "plateau" bookkeeping in GetLearningRate at iteration `it`:
    returns (current_step_, minimum_loss_, iter_last_event_) after it.

    The loss is Solver::smoothed_loss_ (the mean of the last average_loss iterations'
    losses, each the mean over iter_size passes; restarted by every Solver::Step).  A
    smoothed loss strictly below minimum_loss_ (float32 compare) is an event; so is a
    drop, taken once `it` >= iter_last_event_ + plateau_winsize[current_step_], at most
    one per iteration and none after the last window."""
    loss = np.float32(smoothed_loss)
    if loss < np.float32(minimum_loss):
        minimum_loss, iter_last_event = float(loss), it
    if current_step < len(plateau_winsize) and \
            it >= iter_last_event + plateau_winsize[current_step]:
        current_step += 1
        iter_last_event = it
    return current_step, minimum_loss, iter_last_event


class CaffeLR(torch.optim.lr_scheduler.LRScheduler):
    """SGDSolver::GetLearningRate as a scheduler: sets every group's "lr" (Caffe's
    global rate; each group's lr_mult scales it inside the optimizer).

    The rate that `optimizer.step()` applies at Caffe iteration `it` is `rate(it)`;
    call `scheduler.step()` after `optimizer.step()` to move on to it + 1, as usual in
    torch.  `current_step` is Caffe's `current_step_` as the solverstate saves it (the
    value after the previous iteration's rate); `restore(iteration, current_step)`
    resumes from a solverstate.

    "plateau" (the SSD fork's) also needs the loss: call `observe_loss(smoothed_loss)`
    once per iteration, after the forward/backward passes and before `optimizer.step()`,
    with Caffe's smoothed loss of that iteration (caffe_fx.Solver does); it may lower the
    groups' "lr" for this very update.  Its state is `minimum_loss` and
    `iter_last_event`, as the fork's solverstate saves them.

    Args:
        optimizer: a caffe_fx.optim optimizer (any torch Optimizer works).
        policy: one of fixed, step, exp, inv, multistep, poly, sigmoid, plateau.
        base_lr, gamma, power, stepsize, stepvalue, max_iter, plateau_winsize: the
            SolverParameter fields.
        where: names the solver file in errors.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, policy: str = "fixed", *,
                 base_lr: float, gamma: float = 0.0, power: float = 0.0, stepsize: int = 0,
                 stepvalue: Sequence[int] = (), max_iter: int = 0,
                 plateau_winsize: Sequence[int] = (),
                 where: str = "<solver>", last_epoch: int = -1) -> None:
        _check_policy(policy, gamma=gamma, stepsize=stepsize, where=where,
                      plateau_winsize=plateau_winsize)
        self.policy = policy
        self.base_lr = float(base_lr)
        self._fields: dict[str, Any] = {
            "base_lr": float(base_lr), "gamma": float(gamma), "power": float(power),
            "stepsize": int(stepsize), "stepvalue": tuple(int(s) for s in stepvalue),
            "max_iter": int(max_iter),
            "plateau_winsize": tuple(int(w) for w in plateau_winsize), "where": where}
        self.current_step = 0
        self._after = 0  # current_step_ once rate(last_epoch) has been computed
        # plateau: SGDSolver::PreSolve's minimum_loss_; the fork leaves iter_last_event_
        # unset until the first loss below it (its solverstate's default is 0).
        self.minimum_loss = FLT_MAX
        self.iter_last_event = 0
        super().__init__(optimizer, last_epoch)

    def rate(self, it: int) -> float:
        """GetLearningRate(it) from Caffe's current state; like Caffe, `step` and
        `multistep` update that state (`multistep` moves on at most one step a call)."""
        value, self._after = learning_rate(self.policy, it, self._after, **self._fields)
        return value

    @property
    def step_now(self) -> int:
        """Caffe's current_step_ as it is now, after the current iteration's rate (and,
        for "plateau", its observe_loss)."""
        return self._after

    def observe_loss(self, smoothed_loss: float) -> float:
        """"plateau": GetLearningRate's bookkeeping at the current iteration with Caffe's
        smoothed loss (see plateau_update); sets and returns the rate this iteration's
        update applies.  Other policies ignore the loss and return the rate as it is."""
        if self.policy != "plateau":  # the rate get_lr set, without moving the state
            return learning_rate(self.policy, self.last_epoch, self.current_step,
                                 **self._fields)[0]
        self._after, self.minimum_loss, self.iter_last_event = plateau_update(
            self.last_epoch, self._after, smoothed_loss, self.minimum_loss,
            self.iter_last_event, self._fields["plateau_winsize"])
        value = self.rate(self.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = value
        self._last_lr = [value for _ in self.optimizer.param_groups]
        return value

    def get_lr(self) -> list[float]:  # type: ignore[override]
        self.current_step = self._after
        value = self.rate(self.last_epoch)
        return [value for _ in self.optimizer.param_groups]

    def restore(self, iteration: int, current_step: int, *,
                minimum_loss: float | None = None, iter_last_event: int | None = None
                ) -> None:
        """Resumes at Caffe iteration `iteration` with the solverstate's current_step and,
        for "plateau", its minimum_loss and iter_last_event (kept as they are when not
        given) (SGDSolver::RestoreSolverState); the groups get rate(iteration)."""
        self.last_epoch = int(iteration)
        self.current_step = self._after = int(current_step)
        if minimum_loss is not None:
            self.minimum_loss = float(np.float32(minimum_loss))
        if iter_last_event is not None:
            self.iter_last_event = int(iter_last_event)
        value = self.rate(self.last_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = value
        self._last_lr = [value for _ in self.optimizer.param_groups]
