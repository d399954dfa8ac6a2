"""A solver.prototxt as an optimizer and a scheduler over a compiled net.

Training stage.  Mirrors ReadSolverParamsFromTextFileOrDie and UpgradeSolverType
(src/caffe/util/upgrade_proto.cpp), SolverRegistry::CreateSolver and the CHECKs of the
solver constructors (include/caffe/sgd_solvers.hpp), and the learnable_params_ /
params_lr_ / params_weight_decay_ that Net::AppendParam builds (src/caffe/net.cpp).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import fx

from ..errors import InputError, ProtoError, ProtoUpgradeError, together
from ..frontend.files import path_argument
from ..frontend.read import parse_text
from ..proto import caffe_pb2
from .lr import CaffeLR, policy_problems
from .solvers import SGD, AdaDelta, AdaGrad, Adam, CaffeOptimizer, Nesterov, RMSProp

__all__ = ["SOLVER_TYPES", "from_solver", "read_solver"]

# SolverParameter.SolverType (deprecated enum) -> the `type` string (UpgradeSolverType).
_LEGACY_TYPES = {
    caffe_pb2.SolverParameter.SGD: "SGD",
    caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
    caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
    caffe_pb2.SolverParameter.ADAM: "Adam",
}
SOLVER_TYPES: dict[str, type[CaffeOptimizer]] = {
    "SGD": SGD, "Nesterov": Nesterov, "AdaGrad": AdaGrad, "RMSProp": RMSProp,
    "AdaDelta": AdaDelta, "Adam": Adam,
}


def read_solver(filename: str | os.PathLike) -> caffe_pb2.SolverParameter:
    """ReadSolverParamsFromTextFileOrDie: parse, turn the legacy `solver_type` enum into
    `type`, and default `snapshot_prefix` to the solver file's path without extension
    (a folder given as snapshot_prefix gets the file's stem inside it)."""
    where = path_argument(filename, "the solver file", InputError)
    try:
        text = Path(filename).read_text()
    except OSError as e:
        raise ProtoError(f"{where}: cannot read the solver file: {e.strerror}") from e
    param = cast(caffe_pb2.SolverParameter,
                 parse_text(text, where, caffe_pb2.SolverParameter()))
    if param.HasField("solver_type"):
        if param.HasField("type"):
            raise ProtoUpgradeError(
                f"{where}: old solver_type field (enum) and new type field (string) cannot be "
                f"both specified (solver_type = "
                f"{caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)}, "
                f"type = {param.type!r}); keep only type")
        param.type = _LEGACY_TYPES[param.solver_type]
        param.ClearField("solver_type")
    path = Path(where)
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = str(path.with_suffix(""))
    elif Path(param.snapshot_prefix).is_dir():
        param.snapshot_prefix = str(Path(param.snapshot_prefix) / path.stem)
    return param


def _learnable(module: fx.GraphModule, where: str) -> list[tuple[torch.Tensor, float, float]]:
    """Caffe's learnable_params_ with params_lr_ and params_weight_decay_."""
    info = getattr(module, "meta", {}).get("caffe")
    specs = getattr(info, "param_specs", None)
    if specs is None:
        raise InputError(f"{where}: from_solver needs a GraphModule from caffe_fx.compile() "
                         f"(its meta['caffe'].param_specs); got {type(module).__name__}")
    out: list[tuple[torch.Tensor, float, float]] = []
    for name, spec in specs.items():
        if spec.owner is not None:
            continue  # a shared blob: its owner is the learnable param
        try:
            tensor: torch.Tensor = module.get_parameter(name)
        except AttributeError:
            tensor = module.get_buffer(name)  # BatchNorm's statistics (lr_mult 0)
        out.append((tensor, spec.lr_mult, spec.decay_mult))
    return out


def _show(value: float) -> str:
    """A float32 field as the prototxt spelled it (0.9, not 0.8999999761581421)."""
    return str(np.float32(value))


def update_problems(param: caffe_pb2.SolverParameter, where: str) -> list[ProtoError]:
    """The CHECKs of Solver::Init, the solver constructors and GetLearningRate that
    concern the update, all of them."""
    problems = []
    if param.type not in SOLVER_TYPES:
        problems.append(ProtoError(f"{where}: type = {param.type!r}: Unknown solver type; "
                                   f"allowed: {', '.join(SOLVER_TYPES)}"))
    if param.regularization_type not in ("L2", "L1"):
        problems.append(ProtoError(
            f"{where}: regularization_type = {param.regularization_type!r}: Unknown "
            "regularization type; allowed: 'L2', 'L1'"))
    if param.type in ("AdaGrad", "RMSProp") and param.momentum != 0:
        problems.append(ProtoError(
            f"{where}: momentum = {_show(param.momentum)}: Momentum cannot be used with "
            f"{param.type} (type = {param.type!r}); it must be 0"))
    if param.type == "RMSProp" and not 0 <= param.rms_decay < 1:
        problems.append(ProtoError(f"{where}: rms_decay = {_show(param.rms_decay)}; RMSProp "
                                   "needs 0 <= rms_decay < 1"))
    if param.iter_size < 1:
        problems.append(ProtoError(f"{where}: iter_size = {param.iter_size}; it must be >= 1"))
    return problems + policy_problems(param.lr_policy, gamma=param.gamma,
                                      stepsize=param.stepsize, where=where,
                                      plateau_winsize=list(param.plateau_winsize))


def _check(param: caffe_pb2.SolverParameter, where: str) -> None:
    problems = update_problems(param, where)
    if problems:
        raise together(problems, where, "solver")


def from_solver(solver: str | os.PathLike | caffe_pb2.SolverParameter,
                module: fx.GraphModule, *, iter_size: int | None = None
                ) -> tuple[CaffeOptimizer, CaffeLR]:
    """The optimizer and the scheduler a solver.prototxt describes, over `module`'s blobs.

    Args:
        solver: a solver.prototxt path (read with read_solver) or a SolverParameter.
        module: the train net, a GraphModule from `caffe_fx.compile(..., phase="train")`.
        iter_size: overrides the solver's iter_size (the number of forward/backward
            passes whose summed `.grad`s one step() consumes).

    The optimizer is the solver `type`'s class with base_lr, momentum, momentum2, delta,
    rms_decay, weight_decay, regularization_type, clip_gradients and iter_size; one param
    group per distinct (lr_mult, decay_mult); its params are Caffe's learnable_params_
    (every layer blob in the net's order, a shared blob once with the lr_mult/decay_mult
    Net::AppendParam gives it), including blobs of lr_mult 0, which never move but have
    history blobs in Caffe's solverstate; `optimizer.param_order` keeps Caffe's order.
    The scheduler is a CaffeLR of the solver's lr_policy (with the SSD fork's "plateau",
    call `scheduler.observe_loss(smoothed_loss)` before each `optimizer.step()`).
    """
    if isinstance(solver, caffe_pb2.SolverParameter):
        param, where = solver, "<SolverParameter>"
    else:
        param, where = read_solver(solver), os.fspath(solver)
    return build(param, where, module, iter_size=iter_size)


def build(param: caffe_pb2.SolverParameter, where: str, module: fx.GraphModule, *,
          iter_size: int | None = None) -> tuple[CaffeOptimizer, CaffeLR]:
    """from_solver on a SolverParameter read from `where` (named in its errors)."""
    _check(param, where)
    learnable = _learnable(module, where)
    groups: dict[tuple[float, float], list[torch.Tensor]] = {}
    for tensor, lr_mult, decay_mult in learnable:
        groups.setdefault((lr_mult, decay_mult), []).append(tensor)
    param_groups = [{"params": ps, "lr_mult": lr, "decay_mult": decay}
                    for (lr, decay), ps in groups.items()]
    common: dict[str, Any] = {"lr": param.base_lr, "weight_decay": param.weight_decay,
                  "regularization": param.regularization_type,
                  "clip_gradients": param.clip_gradients,
                  "iter_size": param.iter_size if iter_size is None else iter_size}
    kind = param.type
    if kind in ("SGD", "Nesterov"):
        opt: CaffeOptimizer = SOLVER_TYPES[kind](param_groups, momentum=param.momentum, **common)
    elif kind == "AdaGrad":
        opt = AdaGrad(param_groups, delta=param.delta, **common)
    elif kind == "RMSProp":
        opt = RMSProp(param_groups, delta=param.delta, rms_decay=param.rms_decay, **common)
    elif kind == "AdaDelta":
        opt = AdaDelta(param_groups, momentum=param.momentum, delta=param.delta, **common)
    else:
        opt = Adam(param_groups, momentum=param.momentum, momentum2=param.momentum2,
                   delta=param.delta, **common)
    opt.param_order = [t for t, _, _ in learnable]
    scheduler = CaffeLR(opt, param.lr_policy, base_lr=param.base_lr, gamma=param.gamma,
                        power=param.power, stepsize=param.stepsize,
                        stepvalue=list(param.stepvalue), max_iter=param.max_iter,
                        plateau_winsize=list(param.plateau_winsize), where=where)
    return opt, scheduler
