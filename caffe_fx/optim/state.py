"""Caffe's .solverstate files: the binary SolverState proto and the HDF5 layout.

Training stage.  Mirrors SGDSolver::SnapshotSolverStateToBinaryProto / ToHDF5 and
RestoreSolverStateFromBinaryProto / FromHDF5 (src/caffe/solvers/sgd_solver.cpp): `iter`,
`learned_net` (the caffemodel's path), `current_step` and the history blobs (HDF5: int
datasets "iter" and "current_step", a string dataset "learned_net", group "history"
with datasets "0", "1", ...), and the SSD fork's "plateau" state `minimum_loss` and
`iter_last_event` (weiliu89/caffe; HDF5: a float and an int dataset).  Files are written
atomically (caffe_fx/_atomic.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from .._atomic import atomic_path, atomic_write
from ..errors import MissingDependencyError, ProtoParseError, WeightsError
from ..proto import caffe_pb2

__all__ = ["SolverState", "read_solverstate", "write_solverstate"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class SolverState:
    """What a .solverstate holds: Caffe's iter_, the caffemodel it was written with,
    current_step_ (lr policies step/multistep/plateau) and the history blobs in Caffe's
    order (see CaffeOptimizer.history).  `minimum_loss` and `iter_last_event` are the SSD
    fork's plateau state: None where the file has none (BVLC's), and written only when
    set (the SSD fork writes them always, BVLC Caffe ignores them)."""

    iter: int
    current_step: int
    learned_net: str
    history: list[np.ndarray] = field(default_factory=list)
    minimum_loss: float | None = None
    iter_last_event: int | None = None


def _blob_array(blob: caffe_pb2.BlobProto, where: str, i: int) -> np.ndarray:
    """Blob::FromProto: `shape`, or the legacy num/channels/height/width."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.double_data if len(blob.double_data) else blob.data
    data = np.asarray(values, dtype=np.float32)
    if data.size != int(np.prod(shape)):
        raise WeightsError(f"{where}: history blob {i} has {data.size} values for shape "
                           f"{list(shape)} ({int(np.prod(shape))} values)")
    return data.reshape(shape)


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise MissingDependencyError("HDF5 solverstates need h5py: pip install h5py") from e
    return h5py


def read_solverstate(path: str | os.PathLike) -> SolverState:
    """Reads a .solverstate (binary SolverState proto) or .solverstate.h5 as Caffe
    writes them; the format is recognised by the file's first bytes."""
    where = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise WeightsError(f"{where}: cannot read the solver state: {e.strerror}") from e
    if raw.startswith(_HDF5_SIGNATURE):
        return _read_hdf5(where)
    state = caffe_pb2.SolverState()
    try:
        state.ParseFromString(raw)
    except DecodeError as e:
        raise ProtoParseError(f"{where}: not a binary SolverState proto (nor HDF5): "
                              f"{e}") from e
    return SolverState(iter=state.iter, current_step=state.current_step,
                       learned_net=state.learned_net,
                       history=[_blob_array(b, where, i) for i, b in enumerate(state.history)],
                       minimum_loss=state.minimum_loss if state.HasField("minimum_loss")
                       else None,
                       iter_last_event=state.iter_last_event
                       if state.HasField("iter_last_event") else None)


def _read_hdf5(where: str) -> SolverState:
    h5py = _h5py()
    try:
        with h5py.File(where, "r") as f:
            missing = [k for k in ("iter", "current_step", "history") if k not in f]
            if missing:
                raise WeightsError(f"{where}: HDF5 solver state lacks {missing}; Caffe writes "
                                   "iter, current_step, learned_net and group history")
            learned = f["learned_net"][()] if "learned_net" in f else b""
            hist = f["history"]
            names = sorted(hist.keys(), key=lambda k: int(k) if k.isdigit() else -1)
            if names != [str(i) for i in range(len(names))]:
                raise WeightsError(f"{where}: HDF5 history datasets are {sorted(hist.keys())}; "
                                   "expected 0, 1, ... as Caffe writes them")
            def scalar(name: str) -> np.ndarray | None:
                return np.asarray(f[name][()]).reshape(-1)[0] if name in f else None

            minimum, last_event = scalar("minimum_loss"), scalar("iter_last_event")
            return SolverState(
                iter=int(np.asarray(f["iter"][()]).reshape(-1)[0]),
                current_step=int(np.asarray(f["current_step"][()]).reshape(-1)[0]),
                learned_net=(learned.decode() if isinstance(learned, bytes)
                             else str(learned)).rstrip("\0"),
                history=[np.asarray(hist[n][()], dtype=np.float32) for n in names],
                minimum_loss=None if minimum is None else float(minimum),
                iter_last_event=None if last_event is None else int(last_event))
    except OSError as e:
        raise WeightsError(f"{where}: cannot read the HDF5 solver state: {e}") from e


def write_solverstate(path: str | os.PathLike, state: SolverState, *, hdf5: bool = False,
                      force: bool = False) -> Path:
    """Writes `state` as real Caffe does: a binary SolverState proto
    (SnapshotSolverStateToBinaryProto; blobs with `shape` and float data), or with
    `hdf5=True` the layout of SnapshotSolverStateToHDF5.  An existing file is replaced
    only with `force=True`.  Returns the path written."""
    p = Path(path)
    arrays = [np.ascontiguousarray(np.asarray(h, dtype=np.float32)) for h in state.history]
    if hdf5:
        h5py = _h5py()
        with atomic_path(p, force=force) as tmp, h5py.File(tmp, "w") as f:
            # hdf5_save_int / hdf5_save_string (src/caffe/util/hdf5.cpp): a 1-element int
            # dataset, a scalar string dataset.
            f.create_dataset("iter", data=np.array([state.iter], dtype=np.int32))
            # H5LTmake_dataset_string stores the terminating NUL, and Caffe's
            # hdf5_load_string relies on it.
            name = state.learned_net.encode()
            f.create_dataset("learned_net", data=np.array(name, dtype=f"S{len(name) + 1}"))
            f.create_dataset("current_step", data=np.array([state.current_step], dtype=np.int32))
            group = f.create_group("history")
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=a)
            # The SSD fork's hdf5_save_int / hdf5_save_float: 1-element datasets.
            if state.iter_last_event is not None:
                f.create_dataset("iter_last_event",
                                 data=np.array([state.iter_last_event], dtype=np.int32))
            if state.minimum_loss is not None:
                f.create_dataset("minimum_loss",
                                 data=np.array([state.minimum_loss], dtype=np.float32))
        return p
    proto = caffe_pb2.SolverState(iter=state.iter, learned_net=state.learned_net,
                                  current_step=state.current_step)
    if state.minimum_loss is not None:
        proto.minimum_loss = state.minimum_loss
    if state.iter_last_event is not None:
        proto.iter_last_event = state.iter_last_event
    for a in arrays:
        blob = proto.history.add()
        blob.shape.dim.extend(int(d) for d in a.shape)
        blob.data.extend(a.reshape(-1).tolist())
    with atomic_write(p, force=force) as f:
        f.write(proto.SerializeToString())
    return p
