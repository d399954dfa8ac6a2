"""`caffe_fx.Solver`: trains a solver.prototxt on compiled GraphModules as Caffe does.

Mirrors src/caffe/solver.cpp (Init, InitTrainNet, InitTestNets, Step, Solve, TestAll,
Test, UpdateSmoothedLoss, Snapshot, Restore, CheckSnapshotWritePermissions), the snapshot
and restore of src/caffe/solvers/sgd_solver.cpp and the signal handling of tools/caffe.cpp
(-sigint_effect, -sighup_effect).  The update rules and the learning rate are
caffe_fx.optim's, the data layers caffe_fx.data's.  The loop is written once, in
`_Training`, over a small net runner protocol: GraphModules here (`_GraphRunner`), the
pycaffe facade's Nets in caffe_fx/pycaffe/solver.py.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
from torch import fx

from . import binding, pipeline
from .data import set_random_seed
from .data.top_shapes import READS_BATCHES
from .errors import (CALLER, CaffeFxError, DeviceError, InputError, NetDefinitionError,
                     ProtoError, ProtoParseError, UnusedWeightsWarning, spelled, together,
                     with_message)
from .frontend.read import read_net
from .lowering.registry import top_loss_weights
from .proto import caffe_pb2

__all__ = ["Solver"]

log = logging.getLogger("caffe_fx.solver")

_TRAIN_NET_FIELDS = ("train_net", "train_net_param", "net", "net_param")
Effect = Literal["stop", "snapshot", "none"]
_EFFECTS = ("stop", "snapshot", "none")
NetSource = str | caffe_pb2.NetParameter


def _g(value: float) -> str:
    """How Caffe's LOG prints a Dtype: ostream's default, 6 significant digits."""
    return f"{float(np.float32(value)):.6g}"


# --------------------------------------------------------------- Init: which nets to build

@dataclass(frozen=True)
class NetSpec:
    """One net Solver::InitTrainNet / InitTestNets builds: its source (a path, opened
    relative to the current folder as Caffe opens it, or a NetParameter) and the NetState
    (phase, level and the solver's extra stages after the net's own)."""

    source: NetSource
    phase: int
    level: int
    stages: tuple[str, ...]


def _net_spec(source: NetSource, phase: int, extra: caffe_pb2.NetState | None) -> NetSpec:
    # The NetState: phase, then the net's own state, then the solver's train_state /
    # test_state (stages append, phase and level override).
    net_param = read_net(source)
    state = caffe_pb2.NetState(phase=cast(Any, phase))
    state.MergeFrom(net_param.state)
    if extra is not None:
        state.MergeFrom(extra)
    stages = tuple(extra.stage) if extra is not None else ()
    return NetSpec(source, state.phase, state.level, stages)


def _test_sources(param: caffe_pb2.SolverParameter) -> list[NetSource]:
    """InitTestNets: the test_net_params, the test_nets, then the generic net once per
    test_iter left over."""
    generic = param.net_param if param.HasField("net_param") else (
        param.net if param.HasField("net") else None)
    sources: list[NetSource] = [*param.test_net_param, *param.test_net]
    if generic is not None:
        sources += [generic] * max(0, len(param.test_iter) - len(sources))
    return sources


def _net_problems(param: caffe_pb2.SolverParameter, where: str) -> list[CaffeFxError]:
    """Solver::InitTrainNet's and InitTestNets' CHECKs (exactly one train net, one test_iter
    per test net, test_state once per test net), and every net file that is not there."""
    problems: list[CaffeFxError] = []
    given = [f for f in _TRAIN_NET_FIELDS if param.HasField(f)]
    if len(given) != 1:
        problems.append(NetDefinitionError(
            f"{where}: SolverParameter must specify exactly one train net using one of these "
            f"fields: train_net, train_net_param, net, net_param; given: {given or 'none'}"))
    sources = _test_sources(param)
    generic = param.HasField("net_param") or param.HasField("net")
    if len(param.test_iter) < len(sources) or (not generic and
                                               len(param.test_iter) != len(sources)):
        problems.append(NetDefinitionError(
            f"{where}: test_iter must be specified for each test network: {len(sources)} test "
            f"nets, {len(param.test_iter)} test_iter values"))
    if sources and param.test_interval <= 0:
        problems.append(NetDefinitionError(
            f"{where}: test_interval = {param.test_interval}; it must be > 0 when the solver "
            "has test nets"))
    if param.test_state and len(param.test_state) != len(sources):
        problems.append(NetDefinitionError(
            f"{where}: test_state must be unspecified or specified once per test net "
            f"({len(sources)} test nets, {len(param.test_state)} test_state entries)"))
    files = [(f, getattr(param, f)) for f in ("net", "train_net") if param.HasField(f)]
    files += [(f"test_net[{i}]", n) for i, n in enumerate(param.test_net)]
    for field, name in files:
        if not os.path.lexists(name):
            problems.append(ProtoParseError(
                f"{where}: {field} = {name!r}: no such prototxt file; relative paths are read "
                f"from the current folder, {os.getcwd()}, as Caffe reads them"))
    return problems


def net_specs(param: caffe_pb2.SolverParameter, where: str) -> tuple[NetSpec, list[NetSpec]]:
    """Solver::InitTrainNet and InitTestNets: the train net and the test nets, checked as
    Caffe checks them (_net_problems)."""
    problems = _net_problems(param, where)
    if problems:
        raise together(problems, where, "solver")
    field = next(f for f in _TRAIN_NET_FIELDS if param.HasField(f))
    train = _net_spec(getattr(param, field), caffe_pb2.TRAIN,
                      param.train_state if param.HasField("train_state") else None)
    tests = [_net_spec(src, caffe_pb2.TEST, param.test_state[i] if param.test_state else None)
             for i, src in enumerate(_test_sources(param))]
    return train, tests


def check_solver(param: caffe_pb2.SolverParameter, where: str) -> None:
    """Every problem of the solver file, in one error, before any net is built: the
    fields Caffe checks (or would divide by) before the first iteration, the update's
    (optim.update_problems), the nets' (_net_problems) and the snapshot folder
    (CheckSnapshotWritePermissions)."""
    from .optim.solver_param import update_problems

    problems: list[CaffeFxError] = [*update_problems(param, where)]
    for name, low in (("average_loss", 1), ("display", 0), ("max_iter", 0), ("snapshot", 0),
                      ("test_interval", 0)):
        value = getattr(param, name)
        if value < low:
            problems.append(ProtoError(f"{where}: {name} = {value}; it must be >= {low}"))
    for i, n in enumerate(param.test_iter):
        if n < 0:
            problems.append(ProtoError(f"{where}: test_iter[{i}] = {n}; it must be >= 0"))
    if param.eval_type not in ("classification", "detection"):
        problems.append(ProtoError(
            f"{where}: eval_type = {param.eval_type!r}: Unknown evaluation type (the SSD "
            "fork's: 'classification' or 'detection')"))
    if param.ap_version not in AP_VERSIONS:
        problems.append(ProtoError(
            f"{where}: ap_version = {param.ap_version!r}: Unknown ap_version (the SSD fork's: "
            f"{', '.join(AP_VERSIONS)})"))
    if param.snapshot_diff:
        problems.append(ProtoError(
            f"{where}: snapshot_diff = true is not supported by caffe_fx (the snapshots hold "
            "the weights only); remove it"))
    if param.snapshot:
        try:
            check_snapshot_folder(param, where)
        except ProtoError as e:
            problems.append(e)
    problems += _net_problems(param, where)
    if problems:
        raise together(problems, where, "solver")


def check_snapshot_folder(param: caffe_pb2.SolverParameter, where: str) -> None:
    """CheckSnapshotWritePermissions: the folder of snapshot_prefix must exist and be
    writable (Caffe probes it with a `<prefix>_iter_<N>.tempfile`)."""
    folder = Path(param.snapshot_prefix).parent
    if not folder.is_dir():
        raise ProtoError(
            f"{where}: snapshot_prefix = {param.snapshot_prefix!r}: the folder '{folder}' does "
            "not exist (snapshots are written as <snapshot_prefix>_iter_<N>.caffemodel); create "
            "it or change snapshot_prefix")
    if not os.access(folder, os.W_OK):
        raise ProtoError(f"{where}: snapshot_prefix = {param.snapshot_prefix!r}: cannot write "
                         f"to the folder '{folder}'")


def iterations(iters: Any) -> int:
    """step()'s argument: a whole number >= 0."""
    if isinstance(iters, bool) or not hasattr(iters, "__index__"):
        raise InputError(f"step({iters!r}): allowed: a whole number of iterations >= 0")
    if iters < 0:
        raise InputError(f"step({iters}): the number of iterations must be >= 0")
    return int(iters.__index__())


def _batch(given: Any, name: str, call: str) -> Mapping[str, Any]:
    """What Solver(inputs=) / (test_inputs=) returned, checked to be a mapping."""
    if not isinstance(given, Mapping):
        raise InputError(f"Solver({name}=...) returned {type(given).__name__} for {call}; "
                         "allowed: a mapping {blob name: array}")
    return given


def resolve_device(device: str | torch.device | None, param: caffe_pb2.SolverParameter,
                   where: str) -> torch.device:
    """`device=` wins; else solver_mode GPU (written in the file) means cuda:<device_id>;
    else the CPU (caffe.proto's default solver_mode is GPU: caffe_fx defaults to the CPU)."""
    if device is None:
        if param.HasField("solver_mode") and param.solver_mode == caffe_pb2.SolverParameter.GPU:
            dev = torch.device("cuda", param.device_id)
            what = f"{where}: solver_mode = GPU, device_id = {param.device_id}"
        else:
            return torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise DeviceError(f"Solver(device={device!r}): not a device; allowed: 'cpu', "
                              "'cuda', 'cuda:N' or a torch.device") from e
        what = f"Solver(device={device!r})"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            fix = ("set `solver_mode: CPU` in the solver file" if CALLER.get() == "cli"
                   and device is None else "use device='cpu'")
            raise DeviceError(f"{what}: CUDA is not available on this machine (no CUDA device "
                              f"or a CPU-only torch build); {fix}")
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{what}: no CUDA device {index}; allowed: 0 to "
                              f"{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise DeviceError(f"{what}: device type {dev.type!r} is not supported; allowed: cpu, "
                          "cuda")
    return dev


def _world() -> tuple[int, int]:
    """(rank, world_size): Caffe's solver_rank and solver_count, torch.distributed's
    when a group runs, else what pycaffe declared (0, 1 by default)."""
    from . import distributed

    return distributed.rank(), distributed.world_size()


# ----------------------------------------------------------------------------- runners

class NetRunner(Protocol):
    """What the loop needs of a net: one Net::Forward (and Backward), its outputs, its
    parameters' diffs, weight sharing and the caffemodel files."""

    name: str  # NetParameter.name, for "Solving <name>"

    def graph_module(self) -> fx.GraphModule:
        """The GraphModule whose Parameters (and gm.meta["caffe"].param_specs) the
        optimizer updates."""
        ...

    def forward(self, backward: bool) -> float:
        """Net::Forward (+ Backward): Caffe's loss, the loss-weighted sum of the loss tops."""
        ...

    def outputs(self) -> list[tuple[str, np.ndarray, float]]:
        """The net's output blobs after the last forward: (name, values, loss weight)."""
        ...

    def clear_param_diffs(self) -> None: ...

    def share_from(self, other: Any) -> None:
        """Net::ShareTrainedLayersWith: layers of the same name use `other`'s blobs."""
        ...

    def copy_from(self, path: str) -> None:
        """Net::CopyTrainedLayersFrom, binary or HDF5."""
        ...

    def save(self, path: str, hdf5: bool) -> None:
        """Net::ToProto + WriteProtoToBinaryFile, or Net::ToHDF5 (atomic, replacing)."""
        ...

    def before_update(self) -> None: ...

    def after_update(self) -> None: ...


AP_VERSIONS = ("11point", "MaxIntegral", "Integral")


def average_precision(true_pos: list[tuple[float, int]], num_pos: int, version: str
                      ) -> np.float32:
    """The SSD fork's ComputeAP (src/caffe/util/bbox_util.cpp), in its float arithmetic:
    detections (score, 1 if a true positive) stably sorted by descending score, their
    cumulative precision and recall, then the VOC2007 11-point AP, VOC2012's MaxIntegral,
    or the natural Integral."""
    f = np.float32
    if not true_pos or num_pos == 0:
        return f(0)
    ranked = sorted(true_pos, key=lambda pair: -pair[0])  # stable, as std::stable_sort
    tp = np.cumsum([t for _, t in ranked])
    fp = np.cumsum([1 - t for _, t in ranked])
    prec = [f(f(a) / f(a + b)) for a, b in zip(tp, fp)]
    rec = [f(f(a) / f(num_pos)) for a in tp]
    eps = 1e-6
    ap = f(0)
    if version == "11point":
        max_precs = [f(0)] * 11
        start = len(ranked) - 1
        for j in range(10, -1, -1):
            for i in range(start, -1, -1):
                if rec[i] < j / 10.0:
                    start = i
                    if j > 0:
                        max_precs[j - 1] = max_precs[j]
                    break
                if max_precs[j] < prec[i]:
                    max_precs[j] = prec[i]
        for j in range(10, -1, -1):
            ap = f(ap + f(max_precs[j] / f(11)))
    elif version == "MaxIntegral":
        cur_rec, cur_prec = rec[-1], prec[-1]
        for i in range(len(ranked) - 2, -1, -1):
            cur_prec = max(prec[i], cur_prec)
            if abs(cur_rec - rec[i]) > eps:
                ap = f(ap + f(cur_prec * f(abs(cur_rec - rec[i]))))
            cur_rec = rec[i]
        ap = f(ap + f(cur_rec * cur_prec))
    else:  # "Integral"
        prev = f(0)
        for i in range(len(ranked)):
            if abs(rec[i] - prev) > eps:
                ap = f(ap + f(prec[i] * f(abs(rec[i] - prev))))
            prev = rec[i]
    return ap


def loss_weights(net: caffe_pb2.NetParameter) -> dict[str, float]:
    """Layer::SetLossWeights over the net: every top with a nonzero loss weight."""
    out: dict[str, float] = {}
    for layer in net.layer:
        for top, w in zip(layer.top, top_loss_weights(layer)):
            if w:
                out[top] = w
    return out


Batch = Mapping[str, Any]


class _GraphRunner:
    """A net as compile() builds it (pipeline.prepare -> lower -> bind), run on `device`
    with its inputs from `source()` (the data feed's batch and the `inputs=` callable's)."""

    def __init__(self, spec: NetSpec, device: torch.device, *, trust_python_layers: bool
                 ) -> None:
        prepared = pipeline.prepare(spec.source, phase=spec.phase, level=spec.level,
                                    stages=spec.stages)
        self.prepared = prepared
        self.where = prepared.where
        self.name = prepared.net.name
        from .passes.name_automatic_tops import automatic_blobs

        automatic = automatic_blobs(prepared.net)
        outs = list(prepared.graph.graph["outputs"])
        self.output_names = [b for b in outs if b not in automatic]
        self.weights = loss_weights(prepared.net)
        wanted = outs + [b for b in self.weights if b not in outs]
        token = READS_BATCHES.set(True)  # its data layers are read, not given shapes
        try:
            built = pipeline.lower(prepared, outputs=wanted,
                                   python_layers={} if trust_python_layers else None)
        finally:
            READS_BATCHES.reset(token)
        binding.bind(built, prepared.net, None, self.where)
        self.slots = binding.slots_of(built, prepared.net)
        gm = built.gm
        gm.eval() if spec.phase == caffe_pb2.TEST else gm.train()
        self.gm = gm.to(device)
        self.device = device
        self.inputs = list(gm.meta["caffe"].inputs)
        self.source: Callable[[], dict[str, Any]] = dict
        self._last: dict[str, torch.Tensor] = {}
        self._params = [p for p in gm.parameters() if p.requires_grad]

    def graph_module(self) -> fx.GraphModule:
        return self.gm

    def _feeds(self) -> dict[str, torch.Tensor]:
        batch = self.source()
        missing = [n for n in self.inputs if n not in batch]
        if missing:
            raise InputError(
                f"{self.where}: no data for the input blob(s) {missing}: give them with "
                "Solver(inputs=callable(iteration) -> {blob: array}) (test nets: test_inputs=), "
                "or feed them from a data layer")
        out = {}
        for name in self.inputs:
            value = batch[name]
            t = value if isinstance(value, torch.Tensor) else torch.from_numpy(
                np.ascontiguousarray(value, dtype=np.float32))
            out[name] = t.to(self.device, torch.float32, non_blocking=True)
        return out

    def forward(self, backward: bool) -> float:
        feeds = self._feeds()
        with torch.set_grad_enabled(backward):
            out = self.gm(**feeds)
            loss: torch.Tensor | None = None
            for blob, w in self.weights.items():
                term = out[blob].sum() * w
                loss = term if loss is None else loss + term
        self._last = out
        if loss is None:
            return 0.0
        if backward and loss.requires_grad:
            loss.backward()
        return float(loss.detach())

    def outputs(self) -> list[tuple[str, np.ndarray, float]]:
        return [(b, self._last[b].detach().cpu().numpy(), self.weights.get(b, 0.0))
                for b in self.output_names]

    def clear_param_diffs(self) -> None:
        # Dropped, not zeroed: the first backward then hands its gradient over without an
        # add, and the optimizer takes a param whose .grad stays None as a zero diff.
        for p in self._params:
            p.grad = None

    def _module_tensors(self) -> dict[str, tuple[Any, list[str]]]:
        info = self.gm.meta["caffe"]
        out = {}
        for layer, sub in info.modules.items():
            module = self.gm.get_submodule(sub)
            out[layer] = (module, list(cast(Any, module).caffe_blobs))
        return out

    def share_from(self, other: Any) -> None:
        theirs = cast(_GraphRunner, other)._module_tensors()
        for layer, (module, attrs) in self._module_tensors().items():
            if layer not in theirs:
                continue  # "Ignoring source layer": the test net keeps its own
            source, source_attrs = theirs[layer]
            if len(attrs) != len(source_attrs):
                raise NetDefinitionError(
                    f"{self.where}: layer '{layer}' has {len(attrs)} blobs here and "
                    f"{len(source_attrs)} in the train net (Incompatible number of blobs)")
            for k, (mine, src) in enumerate(zip(attrs, source_attrs)):
                tensor = getattr(source, src)
                if tuple(getattr(module, mine).shape) != tuple(tensor.shape):
                    raise NetDefinitionError(
                        f"{self.where}: layer '{layer}' blob {k} has shape "
                        f"{list(getattr(module, mine).shape)} here and {list(tensor.shape)} in "
                        f"the train net (Cannot share param {k} weights)")
                if mine in module._parameters:
                    module._parameters[mine] = tensor
                else:
                    module._buffers[mine] = tensor

    @torch.no_grad()
    def copy_from(self, path: str) -> None:
        stored = binding.read(path)
        assert stored is not None
        tensors = {layer: [getattr(m, a) for a in attrs]
                   for layer, (m, attrs) in self._module_tensors().items()}
        fitted = binding.fit(stored, self.slots, path)
        if not any(fitted.values()) and any(stored.layers.values()):
            # Fine-tuning leaves some layers to their fillers (Caffe logs each "Ignoring
            # source layer"); a file none of whose layers the net has is a mistake.
            warnings.warn(f"{path}: none of its layers with blobs is a layer of the net, so "
                          "nothing was copied (Ignoring source layer: "
                          f"{', '.join(n for n, b in stored.layers.items() if b)})",
                          UnusedWeightsWarning, stacklevel=2)
        binding.copy_into(fitted, tensors)

    def save(self, path: str, hdf5: bool) -> None:
        from .weights_io import save_caffemodel

        save_caffemodel(path, self.gm, self.prepared.proto, format="hdf5" if hdf5 else "binary",
                        force=True)

    def before_update(self) -> None:
        pass

    def after_update(self) -> None:
        pass


# ------------------------------------------------------------------------------ the loop

class _Training:
    """Solver<Dtype>'s state and loop over net runners: what caffe_fx.Solver and the
    pycaffe solvers share.  Subclasses build the runners (`_make_runner`)."""

    _param: caffe_pb2.SolverParameter
    _where: str

    def _init_training(self, param: caffe_pb2.SolverParameter, where: str,
                       make_runner: Callable[[NetSpec, int], NetRunner],
                       weights: Sequence[str] = ()) -> None:
        from .optim.solver_param import build

        self._param, self._where = param, where
        check_solver(param, where)
        self._rank, self._world_size = _world()
        # The loop itself broadcasts and averages when it starts inside a group; a solver
        # made before its group (pycaffe's caffe.NCCL) leaves that to the NCCL callbacks.
        from .distributed import running

        self._collective = running()
        train, tests = net_specs(param, where)
        self._train = make_runner(train, -1)
        self._tests = [make_runner(spec, i) for i, spec in enumerate(tests)]
        for spec in [*param.weights, *weights]:  # Solver::Init, then caffe train -weights
            for w in spec.split(","):
                for runner in [self._train, *self._tests]:
                    runner.copy_from(w)
        if self._collective:  # NCCL::Broadcast: every solver starts from the root's blobs
            from .distributed import broadcast_parameters

            gm = self._train.graph_module()
            broadcast_parameters([*gm.parameters(), *gm.buffers()])
        self.optimizer, self.scheduler = build(param, where, self._train.graph_module())
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._callbacks: list[tuple[Callable[[], Any] | None, Callable[[], Any] | None]] = []
        self._iter = 0
        self._losses: list[np.float32] = []
        self._smoothed = np.float32(0)
        self._requested_early_exit = False
        self._action: Callable[[], str] | None = None
        self._last_display = (time.perf_counter(), 0)

    # -- state -----------------------------------------------------------------------

    @property
    def iter(self) -> int:
        """Caffe's iter_: how many times the weights have been updated."""
        return self._iter

    def _sync_optimizer(self) -> None:
        """The optimizer's iteration and the scheduler follow iter_ (SGDSolver reads iter_
        in GetLearningRate and in Adam's bias correction); they drift from it only after
        a bare apply_update() or a restore."""
        if self.optimizer.iteration != self._iter or self.scheduler.last_epoch != self._iter:
            self.optimizer.iteration = self._iter
            self.scheduler.restore(self._iter, self.scheduler.current_step)

    @property
    def _rate(self) -> float:
        """GetLearningRate at iter_ (what the next update applies)."""
        self._sync_optimizer()
        if self.optimizer.param_groups:
            return float(self.optimizer.param_groups[0]["lr"])
        return float(self.scheduler.rate(self._iter))  # a net without learnable params

    def _root(self) -> bool:
        return self._rank == 0

    # -- Step --------------------------------------------------------------------------

    def _requested(self) -> str:
        return self._action() if self._action is not None else "none"

    def _step(self, iters: int) -> None:
        """Solver::Step."""
        p = self._param
        start_iter = self._iter
        stop_iter = self._iter + iters
        average_loss = p.average_loss
        self._losses = []
        self._smoothed = np.float32(0)
        self._last_display = (time.perf_counter(), self._last_display[1])
        while self._iter < stop_iter:
            self._train.clear_param_diffs()
            if p.test_interval and self._iter % p.test_interval == 0 \
                    and (self._iter > 0 or p.test_initialization):
                if self._root():
                    self._test_all()
                if self._requested_early_exit:
                    break
            for on_start, _ in self._callbacks:
                if on_start is not None:
                    on_start()
            display = bool(p.display) and self._iter % p.display == 0
            loss = np.float32(0)
            for _ in range(p.iter_size):
                loss += np.float32(self._train.forward(True))
            loss /= np.float32(p.iter_size)
            self._update_smoothed_loss(loss, start_iter, average_loss)
            if display and self._root():
                self._display()
            for _, on_gradients in self._callbacks:
                if on_gradients is not None:
                    on_gradients()
            if self._collective:
                from .distributed import average_gradients

                average_gradients(self._params)
            self._apply_update()
            self._iter += 1
            request = self._requested()
            if (p.snapshot and self._iter % p.snapshot == 0 and self._root()) \
                    or request == "snapshot":
                self._snapshot()
            if request == "stop":
                self._requested_early_exit = True
                break

    def _update_smoothed_loss(self, loss: np.float32, start_iter: int, average_loss: int
                              ) -> None:
        """Solver::UpdateSmoothedLoss: the mean of the last `average_loss` losses."""
        if len(self._losses) < average_loss:
            self._losses.append(loss)
            size = len(self._losses)
            self._smoothed = np.float32((self._smoothed * np.float32(size - 1) + loss)
                                        / np.float32(size))
        else:
            idx = (self._iter - start_iter) % average_loss
            self._smoothed = np.float32(self._smoothed + (loss - self._losses[idx])
                                        / np.float32(average_loss))
            self._losses[idx] = loss

    @property
    def smoothed_loss(self) -> float:
        """Solver::smoothed_loss_: what the last display line showed."""
        return float(self._smoothed)

    def _display(self) -> None:
        now, last_iter = time.perf_counter(), self._last_display[1]
        lapse = now - self._last_display[0]
        per_s = (self._iter - last_iter) / (lapse or 1)
        log.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", self._iter, _g(per_s),
                 _g(lapse), self._param.display, _g(self._smoothed))
        self._last_display = (now, self._iter)
        index = 0
        for name, values, w in self._train.outputs():
            for v in values.reshape(-1):
                extra = f" (* {_g(w)} = {_g(np.float32(w) * np.float32(v))} loss)" if w else ""
                log.info("    Train net output #%d: %s = %s%s", index, name, _g(v), extra)
                index += 1

    def _apply_update(self) -> None:
        """SGDSolver::ApplyUpdate: the lr line, then the optimizer's step (clip, normalize
        by iter_size, regularize, update rule, data -= diff), without moving iter_.  The
        SSD fork's "plateau" policy first sees this iteration's smoothed loss."""
        self._sync_optimizer()
        before = self.scheduler.step_now
        self.scheduler.observe_loss(float(self._smoothed))
        if self.scheduler.step_now != before and self._root():
            log.info("Plateau Status: Iteration %d, step = %d", self._iter,
                     self.scheduler.step_now)
        rate = self._rate
        if self._param.display and self._iter % self._param.display == 0 and self._root():
            log.info("Iteration %d, lr = %s", self._iter, _g(rate))
        self._train.before_update()
        self.optimizer.step()
        self.scheduler.step()
        self._train.after_update()

    # -- Solve -------------------------------------------------------------------------

    def _solve(self, resume: str | os.PathLike | None) -> None:
        """Solver::Solve."""
        p = self._param
        log.info("Solving %s", self._train.name)
        log.info("Learning Rate Policy: %s", p.lr_policy)
        self._requested_early_exit = False
        if p.snapshot_after_train and self._root():
            check_snapshot_folder(p, self._where)
        if resume is not None:
            log.info("Restoring previous solver status from %s", os.fspath(resume))
            self._restore(resume)
        start_iter = self._iter
        self._step(p.max_iter - self._iter)
        if p.snapshot_after_train and self._root() \
                and (not p.snapshot or self._iter % p.snapshot != 0):
            self._snapshot()
        if self._requested_early_exit:
            log.info("Optimization stopped early.")
            return
        if p.display and self._iter % p.display == 0 and self._root():
            loss = np.float32(self._train.forward(False))
            self._update_smoothed_loss(loss, start_iter, p.average_loss)
            log.info("Iteration %d, loss = %s", self._iter, _g(self._smoothed))
        if p.test_interval and self._iter % p.test_interval == 0 and self._root():
            self._test_all()
        log.info("Optimization Done.")

    # -- Test --------------------------------------------------------------------------

    def _test_all(self) -> list[dict[str, float]]:
        return [self._test(i) for i in range(len(self._tests))]

    def _test(self, index: int) -> dict[str, float]:
        """Solver::Test: the mean of every output element over test_iter forwards, with the
        train net's current weights (shared)."""
        if not 0 <= index < len(self._tests):
            raise InputError(f"test(index={index}): the solver has {len(self._tests)} test "
                             "net(s)")
        p = self._param
        log.info("Iteration %d, Testing net (#%d)", self._iter, index)
        runner = self._tests[index]
        runner.share_from(self._train)  # Test(): ShareTrainedLayersWith, each time
        if p.eval_type == "detection":
            return self._test_detection(runner, p.test_iter[index])
        scores: list[np.ndarray] = []
        names: list[tuple[str, float, int]] = []
        loss = np.float32(0)
        n = p.test_iter[index]
        for i in range(n):
            if self._interrupted():
                break
            iter_loss = np.float32(runner.forward(False))
            if p.test_compute_loss:
                loss += iter_loss
            outs = [(name, v.reshape(-1), w) for name, v, w in runner.outputs()]
            if i == 0:
                scores = [np.array(v, dtype=np.float32) for _, v, _ in outs]
                names = [(name, w, len(v)) for name, v, w in outs]
            else:
                for s, (_, v, _) in zip(scores, outs):
                    s += v.astype(np.float32)
        if self._requested_early_exit:
            log.info("Test interrupted.")
            return {}
        if p.test_compute_loss and n:
            loss /= np.float32(n)
            log.info("Test loss: %s", _g(loss))
        result: dict[str, float] = {}
        k = 0
        for (name, w, count), s in zip(names, scores):
            for j in range(count):
                mean = np.float32(s[j] / np.float32(n))
                extra = f" (* {_g(w)} = {_g(np.float32(w) * mean)} loss)" if w else ""
                log.info("    Test net output #%d: %s = %s%s", k, name, _g(mean), extra)
                result[name if count == 1 else f"{name}[{j}]"] = float(mean)
                k += 1
        return result

    def _interrupted(self) -> bool:
        """GetRequestedAction before a test forward: snapshots asked for are taken; True
        once a stop was asked for."""
        request = self._requested()
        while request != "none":
            if request == "snapshot":
                self._snapshot()
            elif request == "stop":
                self._requested_early_exit = True
            request = self._requested()
        return self._requested_early_exit

    def _test_detection(self, runner: NetRunner, n: int) -> dict[str, float]:
        """The SSD fork's Solver::TestDetection (eval_type "detection", weiliu89/caffe):
        every output is DetectionEvaluate's (..., 5) rows, gathered over `n` forwards; per
        output, the mean over labels of ComputeAP (ap_version) of their detections."""
        p = self._param
        true_pos: dict[int, dict[int, list[tuple[float, int]]]] = {}
        num_pos: dict[int, dict[int, int]] = {}
        loss = np.float32(0)
        names: list[str] = []
        for _ in range(n):
            if self._interrupted():
                log.info("Test interrupted.")
                return {}
            iter_loss = np.float32(runner.forward(False))
            if p.test_compute_loss:
                loss += iter_loss
            outs = runner.outputs()
            names = [name for name, _, _ in outs]
            for j, (name, values, _) in enumerate(outs):
                if values.ndim < 1 or values.shape[-1] != 5:
                    raise InputError(
                        f"eval_type = 'detection': test net output '{name}' has shape "
                        f"{list(values.shape)}; every output must be DetectionEvaluate's "
                        "(..., 5) rows (Caffe: CHECK_EQ(result[j]->width(), 5))")
                for item, label, score, tp, fp in values.reshape(-1, 5):
                    label = int(label)
                    if int(item) == -1:  # a label's count of positives
                        per = num_pos.setdefault(j, {})
                        per[label] = per.get(label, 0) + int(score)
                    elif int(tp) or int(fp):  # 0 and 0: matched a difficult gt, not counted
                        true_pos.setdefault(j, {}).setdefault(label, []).append(
                            (float(np.float32(score)), int(tp)))
        if p.test_compute_loss and n:
            loss /= np.float32(n)
            log.info("Test loss: %s", _g(loss))
        result: dict[str, float] = {}
        for j in range(len(true_pos)):
            if j not in true_pos or j not in num_pos:
                raise InputError(f"eval_type = 'detection': test net output #{j} gave no "
                                 "detections or no positives (Caffe: Missing output_blob)")
            aps = np.float32(0)
            for label, positives in sorted(num_pos[j].items()):
                if label not in true_pos[j]:
                    log.warning("Missing true_pos for label: %d", label)
                    continue
                ap = average_precision(true_pos[j][label], positives, p.ap_version)
                aps += ap
                if p.show_per_class_result:
                    log.info("class%d: %s", label, _g(ap))
            mean_ap = np.float32(aps / np.float32(len(num_pos[j])))
            log.info("    Test net output #%d: %s = %s", j, names[j], _g(mean_ap))
            result[names[j]] = float(mean_ap)
        return result

    # -- snapshots ---------------------------------------------------------------------

    def _snapshot_filename(self, extension: str) -> str:
        return f"{self._param.snapshot_prefix}_iter_{self._iter}{extension}"

    def _snapshot(self) -> tuple[str, str]:
        """Solver::Snapshot: the model, then the solver state naming it (learned_net)."""
        from .optim import SolverState, write_solverstate

        hdf5 = self._param.snapshot_format == caffe_pb2.SolverParameter.HDF5
        model = self._snapshot_filename(".caffemodel.h5" if hdf5 else ".caffemodel")
        log.info("Snapshotting to %s file %s", "HDF5" if hdf5 else "binary proto", model)
        self._train.save(model, hdf5)
        state_file = self._snapshot_filename(".solverstate.h5" if hdf5 else ".solverstate")
        log.info("Snapshotting solver state to %s file %s", "HDF5" if hdf5 else "binary proto",
                 state_file)
        history = [h.detach().cpu().numpy() for h in self.optimizer.history()]
        plateau = self.scheduler.policy == "plateau"  # the SSD fork's state, as it saves it
        write_solverstate(state_file, SolverState(
            iter=self._iter, current_step=self.scheduler.current_step, learned_net=model,
            history=history,
            minimum_loss=self.scheduler.minimum_loss if plateau else None,
            iter_last_event=self.scheduler.iter_last_event if plateau else None),
            hdf5=hdf5, force=True)
        return model, state_file

    def _restore(self, state_file: str | os.PathLike) -> None:
        """Solver::Restore (binary or, by the `.h5` ending, HDF5): iter_, current_step_,
        the SSD fork's minimum_loss_ and iter_last_event_ (a binary state without them
        gives the fork's proto defaults, 1e38 and 0), the history, and the weights of the
        learned_net file the state names."""
        from .optim import read_solverstate

        state = read_solverstate(state_file)
        try:
            self.optimizer.load_history([np.asarray(h) for h in state.history])
        except InputError as e:
            hint = "" if state.history or state.learned_net else (
                "; it holds no solver state at all: is it a .caffemodel? Resuming takes the "
                ".solverstate a snapshot wrote beside it; weights alone are " + spelled(
                    "copied with net.copy_from / Solver(weights=)", "given with -weights"))
            raise with_message(e, f"{os.fspath(state_file)}: {e}{hint}") from e
        if state.learned_net:
            self._train.copy_from(state.learned_net)
        self._iter = int(state.iter)
        self.optimizer.iteration = self._iter
        self.scheduler.restore(
            self._iter, int(state.current_step),
            minimum_loss=1e38 if state.minimum_loss is None else state.minimum_loss,
            iter_last_event=0 if state.iter_last_event is None else state.iter_last_event)

    # -- callbacks and signals ---------------------------------------------------------

    def _add_callback(self, on_start: Callable[[], Any] | None,
                      on_gradients_ready: Callable[[], Any] | None) -> None:
        for f, what in ((on_start, "on_start"), (on_gradients_ready, "on_gradients_ready")):
            if f is not None and not callable(f):
                raise InputError(f"add_callback: {what} is a {type(f).__name__}; it must be "
                                 "callable (or None)")
        self._callbacks.append((on_start, on_gradients_ready))


class Solver(_Training):
    """Trains a Caffe solver.prototxt on compiled GraphModules, as Caffe's Solver does.

        solver = caffe_fx.Solver("lenet_solver.prototxt")
        solver.solve()                       # max_iter iterations, tests, snapshots
        solver.step(10); solver.test()       # or by hand
        solver.net                           # the train GraphModule (test_nets share it)

    Args:
        solver: a solver .prototxt path or a `caffe_pb2.SolverParameter` (read with
            caffe_fx.optim.read_solver: legacy solver_type upgraded, snapshot_prefix
            defaulted).  Net paths in it are opened relative to the current folder, as
            Caffe opens them.
        weights: caffemodel(s) copied into the train and test nets after Init (as
            `caffe train -weights a,b`), after the file's own `weights` field.
        snapshot: a .solverstate(.h5) to resume from (as `caffe train -snapshot`).
        device: "cpu", "cuda", "cuda:N" or a torch.device; default: from solver_mode /
            device_id when the file sets `solver_mode: GPU`, else the CPU.
        inputs: callable(iteration) -> {blob: array or tensor} for the train net's Input
            blobs (and any input no data layer fills); called before every forward pass
            (iter_size times per iteration, with the same iteration).
        test_inputs: callable(test_net_index, test_iteration) -> {blob: array} likewise
            for the test nets.
        on_sigint, on_sighup: what SIGINT / SIGHUP do while solve() runs: "stop" (snapshot,
            then stop), "snapshot" (snapshot and go on) or "none"; Caffe's tool defaults.
        trust_python_layers: as in compile(): Python layers' code may run.

    Data layers (Data, ImageData, HDF5Data, WindowData) read their sources through
    caffe_fx.data.open_feed, in Caffe's order; under torch.distributed with world_size
    > 1 each process takes its rank's records, gradients are averaged before each
    update, and only rank 0 tests, logs and snapshots.  Log lines are Caffe's, on
    logging.getLogger("caffe_fx.solver").
    """

    def __init__(self, solver: str | os.PathLike | caffe_pb2.SolverParameter, *,
                 weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                 snapshot: str | os.PathLike | None = None,
                 device: str | torch.device | None = None,
                 inputs: Callable[[int], Mapping[str, Any]] | None = None,
                 test_inputs: Callable[[int, int], Mapping[str, Any]] | None = None,
                 on_sigint: Effect = "stop", on_sighup: Effect = "snapshot",
                 trust_python_layers: bool = False) -> None:
        from .optim import read_solver

        for name, effect in (("on_sigint", on_sigint), ("on_sighup", on_sighup)):
            if effect not in _EFFECTS:
                raise InputError(f"Solver({name}={effect!r}): allowed: "
                                 f"{', '.join(map(repr, _EFFECTS))}")
        for name, given, signature in (("inputs", inputs, "iteration"),
                                       ("test_inputs", test_inputs,
                                        "test_net_index, test_iteration")):
            if given is not None and not callable(given):
                raise InputError(f"Solver({name}={given!r}): allowed: None or a "
                                 f"callable({signature}) -> {{blob: array}}")
        if isinstance(solver, caffe_pb2.SolverParameter):
            param, where = solver, "<SolverParameter>"
        else:
            param = read_solver(solver)
            where = os.fspath(solver)
        self.device = resolve_device(device, param, where)
        if param.random_seed >= 0:  # Caffe::set_random_seed(random_seed + solver_rank)
            set_random_seed(param.random_seed + _world()[0])
        self._inputs = inputs
        self._test_inputs = test_inputs
        self._effects = {signal.SIGINT: on_sigint}
        if hasattr(signal, "SIGHUP"):
            self._effects[signal.SIGHUP] = on_sighup
        self._signals: list[int] = []
        self._feeds: list[Any] = []
        if weights is None:
            extra: list[str] = []
        elif isinstance(weights, (str, os.PathLike)):
            extra = [os.fspath(weights)]
        else:
            extra = [os.fspath(w) for w in weights]
        self._trust = trust_python_layers
        try:
            self._init_training(param, where, self._make_runner, extra)
        except BaseException:
            self._close_feeds()
            raise
        if snapshot is not None:
            self.restore(snapshot)

    def _make_runner(self, spec: NetSpec, test_index: int) -> NetRunner:
        runner = _GraphRunner(spec, self.device, trust_python_layers=self._trust)
        feed = self._open_feed(runner, spec)
        fed = set(feed.tops) if feed is not None else set()
        given = self._inputs if test_index < 0 else self._test_inputs
        missing = [n for n in runner.inputs if n not in fed]
        if missing and given is None:
            what = "inputs=callable(iteration)" if test_index < 0 else \
                "test_inputs=callable(test_net_index, test_iteration)"
            how = spelled(f"give them with Solver({what} -> {{blob: array}})",
                          "caffe-fx train reads batches from data layers only (Data, "
                          "HDF5Data, ImageData...): put one in the net, or give the "
                          f"blobs from Python with caffe_fx.Solver({what} -> "
                          "{blob: array})")
            raise InputError(
                f"{runner.where}: the {'train' if test_index < 0 else f'test #{test_index}'} net's "
                f"input blob(s) {missing} are filled by no data layer; {how}")
        if test_index < 0:
            count = [0]

            def train_source() -> dict[str, Any]:
                batch: dict[str, Any] = dict(feed.next()) if feed is not None else {}
                if self._inputs is not None:
                    batch.update(_batch(self._inputs(self._iter), "inputs",
                                        f"iteration {self._iter}"))
                return batch

            runner.source = train_source
        else:
            count = [0]

            def test_source() -> dict[str, Any]:
                batch: dict[str, Any] = dict(feed.next()) if feed is not None else {}
                if self._test_inputs is not None:
                    batch.update(_batch(self._test_inputs(test_index, count[0]),
                                        "test_inputs",
                                        f"test net {test_index}, test iteration {count[0]}"))
                count[0] += 1
                return batch

            runner.source = test_source
        return runner

    def _open_feed(self, runner: _GraphRunner, spec: NetSpec) -> Any:
        from .data import DATA_LAYER_TYPES

        if not any(layer.type in DATA_LAYER_TYPES and layer.type != "MemoryData"
                   for layer in runner.prepared.net.layer):
            return None
        try:
            from .data import open_feed
        except ImportError as e:
            raise NetDefinitionError(
                f"{runner.where}: the net has data layers and this caffe_fx has no "
                "caffe_fx.data.open_feed to read them; feed the blobs with inputs=") from e
        rank, world = _world()
        seed = self._param.random_seed if self._param.random_seed >= 0 else None
        feed = open_feed(runner.prepared.net, phase=spec.phase, where=runner.where, seed=seed,
                         rank=rank, world_size=world)
        if feed is not None:
            self._feeds.append(feed)
        return feed

    def _close_feeds(self) -> None:
        for feed in self._feeds:
            with contextlib.suppress(Exception):
                feed.close()
        self._feeds = []

    def close(self) -> None:
        """Closes the data feeds (their prefetch threads and open databases)."""
        self._close_feeds()

    def __enter__(self) -> Solver:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the public surface --------------------------------------------------------------

    @property
    def param(self) -> caffe_pb2.SolverParameter:
        """The SolverParameter being run (as read_solver upgraded it)."""
        return self._param

    @property
    def lr(self) -> float:
        """SGDSolver::GetLearningRate at the current iteration: what the next update uses
        (with the SSD fork's "plateau", unless that iteration's smoothed loss then lowers
        it)."""
        return self._rate

    @property
    def net(self) -> fx.GraphModule:
        """The train net (TRAIN phase GraphModule)."""
        return cast(_GraphRunner, self._train).gm

    @property
    def test_nets(self) -> list[fx.GraphModule]:
        """The test nets (TEST phase); layers named as in the train net share its weights."""
        return [cast(_GraphRunner, r).gm for r in self._tests]

    def step(self, iters: int) -> None:
        """Solver::Step: `iters` iterations (tests, display, update, snapshots)."""
        self._step(iterations(iters))

    def solve(self, resume: str | os.PathLike | None = None) -> None:
        """Solver::Solve: restores `resume` if given, steps to max_iter, snapshots (unless
        snapshot_after_train is false), then a last display and test.  SIGINT and SIGHUP
        act as on_sigint / on_sighup say while it runs (main thread only)."""
        with self._signal_handlers():
            self._solve(resume)

    def test(self, index: int = 0) -> dict[str, float]:
        """Solver::Test of test net `index`: {output name: mean over test_iter} (an output
        with several elements gives `name[k]` keys), logged as Caffe logs it."""
        return self._test(index)

    def snapshot(self) -> tuple[str, str]:
        """Solver::Snapshot: (model file, solver state file) written at the current iter."""
        return self._snapshot()

    def restore(self, state_path: str | os.PathLike) -> None:
        """Solver::Restore from a .solverstate or .solverstate.h5 (ours or Caffe's)."""
        self._restore(state_path)

    def add_callback(self, on_start: Callable[[], Any] | None = None,
                     on_gradients_ready: Callable[[], Any] | None = None) -> None:
        """Solver::add_callback: `on_start()` before each iteration's forward passes,
        `on_gradients_ready()` after them, before the update."""
        self._add_callback(on_start, on_gradients_ready)

    # -- signals -------------------------------------------------------------------------

    def _check_signals(self) -> str:
        """SignalHandler::CheckForSignals: SIGHUP first, then SIGINT; each seen once."""
        for sig in (getattr(signal, "SIGHUP", None), signal.SIGINT):
            if sig in self._signals:
                self._signals = [s for s in self._signals if s != sig]
                return self._effects[sig]
        return "none"

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}
        for sig in self._effects:
            previous[sig] = signal.signal(sig, lambda s, _f: self._signals.append(s))
        self._action = self._check_signals
        try:
            yield
        finally:
            self._action = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __repr__(self) -> str:
        return f"<caffe_fx.Solver {self._where!r} iter={self._iter} device={self.device}>"
