"""`caffe.get_solver` and the solver classes over the pycaffe facade's Nets.

pycaffe facade.  Mirrors the Solver bindings of python/caffe/_caffe.cpp (net, test_nets,
iter, step, solve, restore, snapshot, apply_update, share_weights, add_callback, lr,
param) over src/caffe/solver.cpp and src/caffe/solvers/*.cpp.  The nets are what
Solver::InitTrainNet/InitTestNets build, the loop, snapshots and restore are
caffe_fx.solver's (the same code as caffe_fx.Solver, run on facade Nets), the updates and
the learning rate caffe_fx.optim's.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from torch import fx

from ..data import set_random_seed
from ..proto import caffe_pb2
from ..solver import NetSpec, _Training, iterations
from .net import Net


def read_solver(filename: str | os.PathLike) -> caffe_pb2.SolverParameter:
    """ReadSolverParamsFromTextFileOrDie (caffe_fx.optim.read_solver)."""
    from ..optim import read_solver as read

    return read(filename)


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


class _NetRunner:
    """The loop's view of a facade Net: forward()/backward() on the blobs the user (or a
    data layer) filled; param diffs are the Parameters' .grad, so the optimizer's update
    values show in `net.params[...][i].diff` as in pycaffe."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.name = net._net.name
        weights = net.blob_loss_weights
        self._loss = [(b, float(w)) for b, w in weights.items() if w]
        self._outputs = [(b, float(weights[b])) for b in net.outputs]

    def graph_module(self) -> fx.GraphModule:
        return self.net._gm

    def forward(self, backward: bool) -> float:
        self.net.forward()
        if backward:
            self.net.backward()
        loss = np.float32(0)
        for b, w in self._loss:
            loss += np.float32(w) * self.net.blobs[b].data.sum(dtype=np.float32)
        return float(loss)

    def outputs(self) -> list[tuple[str, np.ndarray, float]]:
        return [(b, self.net.blobs[b].data, w) for b, w in self._outputs]

    def clear_param_diffs(self) -> None:
        # The step's backward follows: the diffs are dropped, not zeroed (Blob.drop_diff;
        # CaffeNet b32's step loses a zeroing and an add over 61M weights).
        for blob in self._param_blobs():
            blob.drop_diff()

    def share_from(self, other: Any) -> None:
        self.net.share_with(cast(_NetRunner, other).net)

    def copy_from(self, path: str) -> None:
        self.net.copy_from(path)

    def save(self, path: str, hdf5: bool) -> None:
        if hdf5:
            self.net.save_hdf5(path)
        else:
            self.net.save(path)

    def _param_blobs(self) -> list[Any]:
        return [b for layer in self.net.layers for b in layer.blobs]

    def before_update(self) -> None:
        # Host writes to params and diffs (GPU mode: host mirrors) reach the device.  A
        # diff that clear_param_diffs dropped and no backward reached becomes zeros, so
        # that it shows the update value afterwards, as Caffe's diff does.
        if self.net._device.type != "cpu":
            for blob in self._param_blobs():
                blob.push()
                blob.diff_tensor  # noqa: B018  (pushes the host's diff writes)
        else:
            for blob in self._param_blobs():
                if blob._param is not None and blob._param.grad is None:
                    blob.diff_tensor  # noqa: B018  (zeros)

    def after_update(self) -> None:
        # The update wrote data and diff on the device: the host mirrors are stale.
        if self.net._device.type != "cpu":
            for blob in self._param_blobs():
                blob._sync_data.written()
                blob._sync_diff.written()


def _make_net(spec: NetSpec, test_index: int) -> _NetRunner:
    # A file is read (and upgraded) by Net itself, relative to the current folder as
    # Caffe opens it.
    return _NetRunner(Net(spec.source, spec.phase, level=spec.level, stages=list(spec.stages)))


class Solver(_Training):
    """Solver::Init over a solver prototxt: `net` (TRAIN), `test_nets` (TEST), `iter`;
    training as Caffe's Solver (caffe_fx.solver's loop on the facade Nets)."""

    _type = ""  # the update rule of this class (SGDSolver...: pycaffe's class decides)

    def __init__(self, filename: str | os.PathLike) -> None:
        param = read_solver(filename)
        where = os.fspath(filename)
        if self._type:
            param.type = self._type
        if param.random_seed >= 0:
            set_random_seed(param.random_seed)
        self._init_training(param, where, _make_net)
        self.param = SolverParameter(param)

    @property
    def net(self) -> Net:
        return cast(_NetRunner, self._train).net

    @property
    def test_nets(self) -> list[Net]:
        return [cast(_NetRunner, r).net for r in self._tests]

    def share_weights(self, net: Net) -> None:
        """pycaffe's share_weights: `net` uses the train net's weights."""
        net.share_with(self.net)

    def step(self, iters: int) -> None:
        """Solver::Step: `iters` iterations; the inputs are what the net's blobs hold (or
        what its data layers read)."""
        self._step(iterations(iters))

    def solve(self, resume_file: str | None = None) -> None:
        """Solver::Solve (max_iter iterations, snapshot, last display and test)."""
        self._solve(resume_file)

    def restore(self, state_file: str) -> None:
        """Solver::Restore from a .solverstate or .solverstate.h5."""
        self._restore(state_file)

    def snapshot(self) -> None:
        """Solver::Snapshot: <prefix>_iter_<N>.caffemodel(.h5) and .solverstate(.h5)."""
        self._snapshot()

    def apply_update(self) -> None:
        """SGDSolver::ApplyUpdate on the diffs the params hold; iter does not move."""
        self._apply_update()

    def add_callback(self, on_start: Any, on_gradients: Callable[[], Any] | None = None
                     ) -> None:
        """pycaffe's add_callback(on_start, on_gradients): called before each iteration's
        forward passes and after them, before the update; or add_callback(nccl), a
        caffe.NCCL (its on_start and on_gradients_ready)."""
        from .parallel import NCCL

        if isinstance(on_start, NCCL) and on_gradients is None:
            on_start, on_gradients = on_start.on_start, on_start.on_gradients_ready
        self._add_callback(on_start, on_gradients)

    def __repr__(self) -> str:
        return f"<caffe_fx.pycaffe.{type(self).__name__} {self._where!r} iter={self.iter}>"


class SGDSolver(Solver):
    _type = "SGD"

    @property
    def lr(self) -> float:
        """SGDSolver::GetLearningRate at the current iteration (float32, as Caffe's
        Dtype)."""
        return self._rate


class NesterovSolver(SGDSolver):
    _type = "Nesterov"


class AdaGradSolver(SGDSolver):
    _type = "AdaGrad"


class RMSPropSolver(SGDSolver):
    _type = "RMSProp"


class AdaDeltaSolver(SGDSolver):
    _type = "AdaDelta"


class AdamSolver(SGDSolver):
    _type = "Adam"


_BY_TYPE: dict[str, type[Solver]] = {
    "SGD": SGDSolver, "Nesterov": NesterovSolver, "AdaGrad": AdaGradSolver,
    "RMSProp": RMSPropSolver, "AdaDelta": AdaDeltaSolver, "Adam": AdamSolver,
}


def get_solver(filename: str | os.PathLike) -> Solver:
    """caffe.get_solver: the solver class named by the file's `type` (after upgrading
    `solver_type`), as SolverRegistry::CreateSolver picks it."""
    # An unknown type is refused by the base class, with the file's other problems.
    return _BY_TYPE.get(read_solver(filename).type, Solver)(filename)
