"""pycaffe's multi-process training and logging surface (python/caffe/_caffe.cpp): NCCL,
Timer, init_log/log, solver_count/solver_rank and their setters, set_multiprocess.

`caffe.NCCL` is Caffe's NCCL<Dtype> over torch.distributed (caffe_fx/distributed.py),
so BVLC's python/train.py pattern runs as written: the parent draws `NCCL.new_uid()`,
each child declares its rank and the count (`set_solver_rank`, `set_solver_count`),
builds its solver (its data layers take that rank's records, DataLayer::Skip), then
`NCCL(solver, uid)` joins the group (gloo on the CPU, NCCL on CUDA; the uid is the
group's rendezvous), `bcast()` gives every rank the root's weights, and the NCCL as a
solver callback (`add_callback(nccl)`) or as `net.after_backward(nccl)` (with
`layer_wise_reduce`, Caffe's default) averages the gradients.  Only rank 0 tests, logs
and snapshots, as Caffe's root solver.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import tempfile
import time
from typing import TYPE_CHECKING, Any

import torch

from .. import distributed
from ..errors import InputError, NetDefinitionError

if TYPE_CHECKING:
    from .solver import Solver

__all__ = ["NCCL", "Timer", "has_nccl", "init_log", "log", "set_multiprocess",
           "set_solver_count", "set_solver_rank", "solver_count", "solver_rank"]

_LOG = logging.getLogger("caffe_fx.pycaffe")
_MULTIPROCESS = {"on": False}


# ------------------------------------------------------------------ Caffe's solver globals

def solver_count() -> int:
    """Caffe::solver_count: the processes training together (1 alone)."""
    return distributed.world_size()


def set_solver_count(count: int) -> None:
    if int(count) < 1:
        raise InputError(f"set_solver_count({count!r}): allowed: 1 or more")
    distributed.declare(count=int(count))


def solver_rank() -> int:
    """Caffe::solver_rank: this process's place among them (0: the root solver)."""
    return distributed.rank()


def set_solver_rank(rank: int) -> None:
    if int(rank) < 0:
        raise InputError(f"set_solver_rank({rank!r}): allowed: 0 or more")
    distributed.declare(rank=int(rank))


def set_multiprocess(on: bool) -> None:
    """Caffe::set_multiprocess: solvers in separate processes (the only way caffe_fx's
    run; kept for the scripts that set it)."""
    _MULTIPROCESS["on"] = bool(on)


def has_nccl() -> bool:
    """Whether caffe.NCCL can join processes: torch.distributed is there (gloo on the CPU,
    NCCL on CUDA), unlike a Caffe built without USE_NCCL."""
    return torch.distributed.is_available()


# ------------------------------------------------------------------------------ logging

def init_log(level: int | None = None) -> None:
    """caffe.init_log: caffe_fx's INFO lines (the solvers' "Iteration N, loss = X",
    caffe.log's) on stderr from now on, as Caffe's glog with GLOG_logtostderr; `level`
    is glog's minloglevel (0 INFO, 1 WARNING, 2 ERROR)."""
    root = logging.getLogger("caffe_fx")
    if not any(getattr(h, "_caffe_fx_init_log", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._caffe_fx_init_log = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    levels = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.CRITICAL}
    root.setLevel(levels.get(level if level is not None else 0, logging.INFO))


def log(message: str) -> None:
    """caffe.log: one INFO line (seen after init_log)."""
    _LOG.info("%s", message)


class Timer:
    """caffe.Timer: start(), stop(), and `ms`, the milliseconds from the last start to its
    stop (reading it stops a running timer, as Timer::MilliSeconds does).  In GPU mode
    the device is synchronized at both ends, as Caffe's CUDA events time the stream."""

    def __init__(self) -> None:
        self._started: float | None = None
        self._elapsed = 0.0
        self._running = False

    @staticmethod
    def _now() -> float:
        from .net import _MODE

        if _MODE["gpu"] and torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        if not self._running:
            self._started = self._now()
            self._running = True

    def stop(self) -> None:
        if self._running:
            self._elapsed = (self._now() - (self._started or 0.0)) * 1e3
            self._running = False

    @property
    def ms(self) -> float:
        if self._started is None:
            _LOG.warning("Timer has never been run before reading time.")
            return 0.0
        self.stop()
        return self._elapsed


# ------------------------------------------------------------------------------ NCCL

def _remove_rendezvous(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


class NCCL:
    """caffe.NCCL(solver, uid): the solver joins the group of solver_count() processes
    that `uid` (NCCL.new_uid(), drawn once by the parent) names, as rank solver_rank()."""

    def __init__(self, solver: Solver, uid: str) -> None:
        from .solver import Solver

        if not isinstance(solver, Solver):
            raise InputError(f"caffe.NCCL({solver!r}, uid): the first argument must be a "
                             "caffe solver (caffe.SGDSolver(...), caffe.get_solver(...))")
        count, rank = solver_count(), solver_rank()
        dist = torch.distributed
        if not dist.is_initialized() and count > 1:
            if not isinstance(uid, str) or not uid.startswith(("file://", "tcp://")):
                raise InputError(f"caffe.NCCL(solver, {uid!r}): uid must be what "
                                 "caffe.NCCL.new_uid() returned")
            device = solver.net._device
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    init_method=uid, rank=rank, world_size=count)
        elif dist.is_initialized() and (dist.get_world_size() != count
                                        or dist.get_rank() != rank):
            raise InputError(f"caffe.NCCL: this process is rank {dist.get_rank()} of "
                             f"{dist.get_world_size()} in torch.distributed, but "
                             f"set_solver_rank/set_solver_count say {rank} of {count}")
        self._solver = solver
        self._layer_wise = solver.param.layer_wise_reduce
        if self._layer_wise and self._shares_params():
            raise NetDefinitionError(
                f"{solver._where}: layer_wise_reduce is not supported for nets with shared "
                "weights (NCCL::on_gradients_ready); set layer_wise_reduce: false")

    @staticmethod
    def new_uid() -> str:
        """A fresh rendezvous for one group (Caffe: ncclGetUniqueId): pass it to every
        process's NCCL(solver, uid)."""
        name = f"caffe_fx_nccl_{os.getpid()}_{secrets.token_hex(8)}"
        path = os.path.join(tempfile.gettempdir(), name)
        # The ranks' FileStore is that file, and they keep it for their whole run: it goes
        # when the process that drew it exits (python/train.py's parent, after joining its
        # children; multiprocessing's children leave through os._exit, running no atexit).
        atexit.register(_remove_rendezvous, path)
        return "file://" + path

    def _runner(self) -> Any:
        return self._solver._train

    def _shares_params(self) -> bool:
        net = self._solver.net
        seen: set[int] = set()
        for layer in net.layers:
            for blob in layer.blobs:
                memory = blob.tensor.untyped_storage().data_ptr()
                if memory in seen:
                    return True
                seen.add(memory)
        return False

    def bcast(self) -> None:
        """NCCL::Broadcast: every rank's weights become the root's."""
        runner = self._runner()
        runner.before_update()  # host writes reach the device first
        gm = runner.graph_module()
        distributed.broadcast_parameters([*gm.parameters(), *gm.buffers()])
        runner.after_update()

    def _reduce(self, blobs: list[Any]) -> None:
        """The diffs of `blobs` (each once: shared blobs hold one) averaged over the
        ranks, on the net's device (the host's diff writes pushed to it first)."""
        if self._solver._collective:
            return  # a solver made inside its group averages in its own loop
        diffs: dict[int, torch.Tensor] = {}
        for blob in blobs:
            diff = blob.diff_tensor
            diffs.setdefault(id(diff), diff)
        distributed.average(list(diffs.values()))
        for blob in blobs:
            blob._sync_diff.written()

    def on_start(self) -> None:
        """Solver::Callback::on_start: nothing to do between processes."""

    def on_gradients_ready(self) -> None:
        """NCCL::on_gradients_ready: without layer_wise_reduce, every learnable diff
        summed over the ranks and divided by solver_count()."""
        if not self._layer_wise:
            self._reduce([b for layer in self._solver.net.layers for b in layer.blobs])

    def __call__(self, layer: int) -> None:
        """NCCL::run as net.after_backward(nccl): with layer_wise_reduce, layer `layer`'s
        diffs averaged as soon as its backward is done."""
        if self._layer_wise:
            self._reduce(list(self._solver.net.layers[layer].blobs))
