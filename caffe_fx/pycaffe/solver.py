"""`caffe.get_solver` and the solver classes: construction only (train and test nets).

pycaffe facade.  Mirrors the Solver bindings of python/caffe/_caffe.cpp over
src/caffe/solver.cpp (Solver::Init, InitTrainNet, InitTestNets), src/caffe/util/
upgrade_proto.cpp (ReadSolverParamsFromTextFileOrDie) and SGDSolver::GetLearningRate
(src/caffe/solvers/sgd_solver.cpp).  Training (step, solve, snapshots) is a separate issue.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NoReturn, cast

import numpy as np

from ..errors import NetDefinitionError, ProtoError, ProtoUpgradeError, PycaffeNotImplementedError
from ..frontend.read import parse_text, read_net
from ..proto import caffe_pb2
from .net import TEST, TRAIN, Net, set_random_seed

# SolverParameter.SolverType (deprecated enum) -> the `type` string (UpgradeSolverType).
_SOLVER_TYPES = {
    caffe_pb2.SolverParameter.SGD: "SGD",
    caffe_pb2.SolverParameter.NESTEROV: "Nesterov",
    caffe_pb2.SolverParameter.ADAGRAD: "AdaGrad",
    caffe_pb2.SolverParameter.RMSPROP: "RMSProp",
    caffe_pb2.SolverParameter.ADADELTA: "AdaDelta",
    caffe_pb2.SolverParameter.ADAM: "Adam",
}
_TRAIN_NET_FIELDS = ("train_net", "train_net_param", "net", "net_param")
_NOT_TRAINING = ("training (step, solve, restore, snapshot, apply_update, callbacks) is a "
                 "separate issue of caffe_fx; the solver's nets can be used for forward and "
                 "backward")


def read_solver(filename: str | os.PathLike) -> caffe_pb2.SolverParameter:
    """ReadSolverParamsFromTextFileOrDie: parse, turn the legacy `solver_type` enum into
    `type`, and default `snapshot_prefix` to the solver file's path without extension."""
    where = os.fspath(filename)
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
        param.type = _SOLVER_TYPES[param.solver_type]
        param.ClearField("solver_type")
    path = Path(where)
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = str(path.with_suffix(""))
    elif Path(param.snapshot_prefix).is_dir():
        param.snapshot_prefix = str(Path(param.snapshot_prefix) / path.stem)
    return param


def _merged_state(phase: int, net_param: caffe_pb2.NetParameter,
                  extra: caffe_pb2.NetState | None) -> caffe_pb2.NetState:
    """Solver::InitTrainNet/InitTestNets: phase, then the net's own state, then the
    solver's train_state/test_state (stages append, phase and level override)."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(net_param.state)
    if extra is not None:
        state.MergeFrom(extra)
    return state


def _make_net(source: str | caffe_pb2.NetParameter, phase: int,
              extra: caffe_pb2.NetState | None) -> Net:
    # A file is read (and upgraded) by Net itself, relative to the current folder as
    # Caffe opens it; only the state is needed from it here.
    net_param = read_net(source)
    state = _merged_state(phase, net_param, extra)
    extra_stages = list(extra.stage) if extra is not None else []
    return Net(source, state.phase, level=state.level, stages=extra_stages)


class SolverParameter:
    """What pycaffe's `solver.param` shows of the SolverParameter: max_iter, display and
    layer_wise_reduce read-only, base_lr read-write (a float32 field)."""

    def __init__(self, param: caffe_pb2.SolverParameter) -> None:
        self._param = param

    @property
    def max_iter(self) -> int:
        return self._param.max_iter

    @property
    def display(self) -> int:
        return self._param.display

    @property
    def layer_wise_reduce(self) -> bool:
        return self._param.layer_wise_reduce

    @property
    def base_lr(self) -> float:
        return float(np.float32(self._param.base_lr))

    @base_lr.setter
    def base_lr(self, value: float) -> None:
        self._param.base_lr = float(value)


class Solver:
    """Solver::Init over a solver prototxt: `net` (TRAIN), `test_nets` (TEST), `iter`."""

    def __init__(self, filename: str | os.PathLike) -> None:
        self._where = os.fspath(filename)
        param = read_solver(filename)
        self._param = param
        self.param = SolverParameter(param)
        if param.random_seed >= 0:
            set_random_seed(param.random_seed)
        self.net = self._init_train_net()
        self.test_nets = self._init_test_nets()
        for spec in param.weights:  # Solver::Init: into the train net and every test net
            for w in spec.split(","):
                for net in [self.net, *self.test_nets]:
                    net.copy_from(w)
        self.iter = 0
        self._current_step = 0

    def _init_train_net(self) -> Net:
        p = self._param
        given = [f for f in _TRAIN_NET_FIELDS if p.HasField(f)]
        if len(given) != 1:
            raise NetDefinitionError(
                f"{self._where}: SolverParameter must specify exactly one train net using one "
                f"of these fields: train_net, train_net_param, net, net_param; given: "
                f"{given or 'none'}")
        field = given[0]
        source = getattr(p, field)
        return _make_net(source, TRAIN, p.train_state if p.HasField("train_state") else None)

    def _init_test_nets(self) -> list[Net]:
        p = self._param
        generic = p.net_param if p.HasField("net_param") else (
            p.net if p.HasField("net") else None)
        sources: list[str | caffe_pb2.NetParameter] = [*p.test_net_param, *p.test_net]
        if generic is not None:
            if len(p.test_iter) < len(sources):
                raise NetDefinitionError(
                    f"{self._where}: test_iter must be specified for each test network: "
                    f"{len(sources)} test nets, {len(p.test_iter)} test_iter values")
            sources += [generic] * (len(p.test_iter) - len(sources))
        elif len(p.test_iter) != len(sources):
            raise NetDefinitionError(
                f"{self._where}: test_iter must be specified for each test network: "
                f"{len(sources)} test nets, {len(p.test_iter)} test_iter values")
        if sources and p.test_interval <= 0:
            raise NetDefinitionError(
                f"{self._where}: test_interval = {p.test_interval}; it must be > 0 when the "
                f"solver has test nets")
        if p.test_state and len(p.test_state) != len(sources):
            raise NetDefinitionError(
                f"{self._where}: test_state must be unspecified or specified once per test net "
                f"({len(sources)} test nets, {len(p.test_state)} test_state entries)")
        return [_make_net(src, TEST, p.test_state[i] if p.test_state else None)
                for i, src in enumerate(sources)]

    def share_weights(self, net: Net) -> None:
        """pycaffe's share_weights: `net` uses the train net's weights."""
        net.share_with(self.net)

    def _not_implemented(self, what: str) -> NoReturn:
        raise PycaffeNotImplementedError(f"{type(self).__name__}.{what}: {_NOT_TRAINING}")

    def step(self, iters: int) -> NoReturn:
        self._not_implemented(f"step({iters})")

    def solve(self, resume_file: str | None = None) -> NoReturn:
        self._not_implemented("solve()")

    def restore(self, state_file: str) -> NoReturn:
        self._not_implemented(f"restore({state_file!r})")

    def snapshot(self) -> NoReturn:
        self._not_implemented("snapshot()")

    def apply_update(self) -> NoReturn:
        self._not_implemented("apply_update()")

    def add_callback(self, *callbacks: Any) -> NoReturn:
        self._not_implemented("add_callback()")

    def __repr__(self) -> str:
        return f"<caffe_fx.pycaffe.{type(self).__name__} {self._where!r} iter={self.iter}>"


class SGDSolver(Solver):
    @property
    def lr(self) -> float:
        """SGDSolver::GetLearningRate at the current iteration (float32, as Caffe's
        Dtype); `multistep` advances its step as Caffe's does when read."""
        p = self._param
        f = lambda v: float(np.float32(v))  # the proto's float fields
        base, gamma, power, it = f(p.base_lr), f(p.gamma), f(p.power), self.iter
        policy = p.lr_policy
        if policy == "fixed":
            rate = base
        elif policy == "step":
            if p.stepsize <= 0:
                raise ProtoError(f"{self._where}: lr_policy 'step' needs stepsize > 0; "
                                 f"stepsize = {p.stepsize}")
            self._current_step = it // p.stepsize
            rate = base * math.pow(gamma, self._current_step)
        elif policy == "exp":
            rate = base * math.pow(gamma, it)
        elif policy == "inv":
            rate = base * math.pow(f(1.0 + gamma * it), -power)
        elif policy == "multistep":
            if self._current_step < len(p.stepvalue) and it >= p.stepvalue[self._current_step]:
                self._current_step += 1
            rate = base * math.pow(gamma, self._current_step)
        elif policy == "poly":
            rate = base * math.pow(f(1.0 - f(it) / f(p.max_iter)), power)
        elif policy == "sigmoid":
            rate = base * f(1.0 / f(1.0 + math.exp(f(-gamma * f(it - p.stepsize)))))
        else:
            raise ProtoError(f"{self._where}: Unknown learning rate policy: {policy!r}; allowed: "
                             "fixed, step, exp, inv, multistep, poly, sigmoid")
        return f(rate)


class NesterovSolver(SGDSolver):
    pass


class AdaGradSolver(SGDSolver):
    pass


class RMSPropSolver(SGDSolver):
    pass


class AdaDeltaSolver(SGDSolver):
    pass


class AdamSolver(SGDSolver):
    pass


_BY_TYPE: dict[str, type[Solver]] = {
    "SGD": SGDSolver, "Nesterov": NesterovSolver, "AdaGrad": AdaGradSolver,
    "RMSProp": RMSPropSolver, "AdaDelta": AdaDeltaSolver, "Adam": AdamSolver,
}


def get_solver(filename: str | os.PathLike) -> Solver:
    """caffe.get_solver: the solver class named by the file's `type` (after upgrading
    `solver_type`), as SolverRegistry::CreateSolver picks it."""
    kind = read_solver(filename).type
    if kind not in _BY_TYPE:
        raise ProtoError(f"{os.fspath(filename)}: Unknown solver type: {kind!r} (known types: "
                         f"{', '.join(sorted(_BY_TYPE))})")
    return _BY_TYPE[kind](filename)
