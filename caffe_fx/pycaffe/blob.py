"""`caffe.Blob`: a named tensor whose `data` and `diff` pycaffe code reads as NumPy arrays.

pycaffe facade.  Mirrors the Blob bindings of python/caffe/_caffe.cpp (shape, count,
num/channels/height/width via Blob::LegacyShape, reshape(*dims)) over include/caffe/blob.hpp
and syncedmem.cpp.  A blob is a view of tensors on the net's device: an activation owns a
data and a diff tensor; a parameter blob is the module's `nn.Parameter`, its diff the
parameter's `.grad`.  On the CPU `data`/`diff` are zero-copy NumPy views; on CUDA they are
host copies synced on access, as SyncedMemory syncs: reading `data` makes the host the
head (pycaffe hands out mutable_cpu_data), and the net copies it back before it computes.
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch

from .. import _memory
from ..errors import PycaffeNotImplementedError, ShapeError
from .._limits import check_shape

_HOST, _DEVICE = "host", "device"


class _Synced:
    """One SyncedMemory: a tensor and, when the tensor is on CUDA, a host mirror."""

    __slots__ = ("head", "host", "key")

    def __init__(self) -> None:
        self.host: np.ndarray | None = None
        self.head = _DEVICE
        self.key: tuple[int, int, tuple[int, ...]] | None = None

    def view(self, tensor: torch.Tensor) -> np.ndarray:
        key = (tensor.data_ptr(), tensor.device.index or 0, tuple(tensor.shape))
        if tensor.device.type == "cpu":
            if self.key != key or self.host is None:
                self.host, self.key = tensor.detach().numpy(), key
            return self.host
        if self.key != key or self.host is None:
            self.host, self.key = np.empty(tuple(tensor.shape), np.float32), key
            self.head = _DEVICE
        if self.head == _DEVICE:
            self.host[...] = tensor.detach().cpu().numpy()
        self.head = _HOST
        return self.host

    def push(self, tensor: torch.Tensor) -> None:
        """Before the device reads the tensor: the host's writes go to it."""
        if tensor.device.type != "cpu" and self.head == _HOST and self.host is not None:
            with torch.no_grad():
                tensor.copy_(torch.from_numpy(self.host), non_blocking=False)
        self.head = _DEVICE

    def written(self) -> None:
        """The device wrote the tensor: the host copy is stale."""
        self.head = _DEVICE


def _held(sync: _Synced) -> bool:
    """Whether pycaffe code holds the NumPy array `sync` handed out (or a view of it)."""
    return sync.host is not None and sys.getrefcount(sync.host) > 2


def _kept(tensor: torch.Tensor, sync: _Synced, shape: list[int], count: int) -> torch.Tensor:
    """Blob::Reshape's memory for `shape`: zeros when it holds more than `tensor`, else
    `tensor`'s first `count` values in Caffe's (row-major) order, the same memory where
    `tensor` is contiguous, with the host's writes pushed first."""
    if count > tensor.numel():
        return torch.zeros(shape, dtype=torch.float32, device=tensor.device)
    sync.push(tensor)
    return tensor.detach().reshape(-1)[:count].view(shape)


class Blob:
    """One Caffe blob; `data`/`diff` are re-fetched after `reshape` (as in pycaffe)."""

    def __init__(self, data: torch.Tensor | np.ndarray,
                 param: torch.nn.Parameter | None = None) -> None:
        if isinstance(data, np.ndarray):
            data = torch.from_numpy(np.ascontiguousarray(data, np.float32))
        self._param = param
        self._data_t: torch.Tensor = param if param is not None else data
        self._diff_t: torch.Tensor | None = None
        self._sync_data, self._sync_diff = _Synced(), _Synced()

    @classmethod
    def of_tensor(cls, tensor: torch.Tensor) -> Blob:
        """A parameter blob: `data` is `tensor`, `diff` its `.grad`."""
        if isinstance(tensor, torch.nn.Parameter):
            return cls(tensor, param=tensor)
        return cls(tensor)

    # -- the tensors (for the net) ---------------------------------------------------

    def push(self) -> None:
        """Before the device reads the blob: writes made through `data` reach it."""
        self._sync_data.push(self._data_t)

    @property
    def tensor(self) -> torch.Tensor:
        """The data tensor, with the host's writes pushed to it."""
        self.push()
        return self._data_t.detach() if self._param is not None else self._data_t

    @property
    def diff_tensor(self) -> torch.Tensor:
        """The diff tensor (zeros until written), with the host's writes pushed to it."""
        if self._param is not None:
            p = self._param
            if p.grad is None or p.grad.shape != p.shape:
                p.grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
            diff = p.grad
        else:
            if self._diff_t is None or self._diff_t.shape != self._data_t.shape \
                    or self._diff_t.device != self._data_t.device:
                self._diff_t = torch.zeros_like(self._data_t)
                self._sync_diff = _Synced()
            diff = self._diff_t
        self._sync_diff.push(diff)
        return diff

    def adopt_data(self, value: torch.Tensor) -> bool:
        """The net's `value` becomes this blob's data without a copy, unless pycaffe code
        holds the array `data` gave (it must keep showing the blob, as Caffe's memory
        does): then False, and the caller copies."""
        if self._param is not None or _held(self._sync_data) \
                or value.dtype != torch.float32 or value.device != self._data_t.device:
            return False
        self._data_t, self._sync_data = value.detach(), _Synced()
        return True

    def adopt_diff(self, value: torch.Tensor) -> bool:
        """As adopt_data, for the diff."""
        if self._param is not None or _held(self._sync_diff) \
                or value.dtype != torch.float32 or value.device != self._data_t.device \
                or value.shape != self._data_t.shape:
            return False
        self._diff_t, self._sync_diff = value.detach(), _Synced()
        return True

    def set_data(self, value: torch.Tensor) -> None:
        """The net wrote `value` into this blob (reallocated if its shape changed)."""
        value = value.detach()
        if self._data_t.shape != value.shape:
            if self._param is not None:
                raise ShapeError(f"a parameter blob of shape {list(self.shape)} cannot take "
                                 f"a value of shape {list(value.shape)}")
            self._data_t = torch.empty(value.shape, dtype=torch.float32,
                                       device=self._data_t.device)
        if self._data_t.data_ptr() != value.data_ptr():
            with torch.no_grad():
                self._data_t.copy_(value)
        self._sync_data.written()

    def set_diff(self, value: torch.Tensor | None) -> None:
        """The net wrote a diff (None: zeros); a parameter's diff accumulates instead."""
        diff = self.diff_tensor
        with torch.no_grad():
            if value is None:
                diff.zero_()
            else:
                diff.copy_(value.detach().reshape(diff.shape))
        self._sync_diff.written()

    def drop_diff(self) -> None:
        """The solver step's Net::ClearParamDiffs for this blob: its diff is zeros.  A
        parameter whose diff array no pycaffe code holds drops its `.grad` instead of
        zeroing it (the diff reads as zeros, and the backward's add_diff takes the
        gradient without a copy): a pass over every weight saved per step, as torch's
        zero_grad(set_to_none=True) saves it.  Only the solver's loop, whose backward
        follows at once, uses it; Net.clear_param_diffs() leaves `.grad` zeros."""
        if self._param is not None and self._param.grad is not None \
                and not _held(self._sync_diff):
            self._param.grad = None
            self._sync_diff = _Synced()
            return
        self.set_diff(None)

    def add_diff(self, value: torch.Tensor, own: bool = False) -> None:
        """Layer::Backward's accumulation into the diff.  `own`: `value` is a fresh
        tensor nothing else uses, which a cleared parameter diff (clear_diff) adopts."""
        p = self._param
        if own and p is not None and p.grad is None and value.shape == p.shape \
                and value.dtype == p.dtype and value.device == p.device \
                and value.is_contiguous() and not value.requires_grad:
            p.grad = value.detach()
            self._sync_diff = _Synced()
            return
        diff = self.diff_tensor
        with torch.no_grad():
            diff.add_(value.detach().reshape(diff.shape))
        self._sync_diff.written()

    def share_data(self, other: Blob) -> None:
        """Blob::ShareData: this blob's data is `other`'s, viewed in this blob's shape."""
        if self._data_t.numel() == other._data_t.numel():
            self._data_t = other._data_t.view(self._data_t.shape)
            self._sync_data = other._sync_data if self.shape == other.shape else _Synced()

    def share_diff(self, other: Blob) -> None:
        """Blob::ShareDiff."""
        if self._data_t.numel() == other._data_t.numel():
            self._diff_t = other.diff_tensor.view(self._data_t.shape)
            self._sync_diff = other._sync_diff if self.shape == other.shape else _Synced()

    def to(self, device: torch.device) -> None:
        """Moves an activation blob to `device` (parameters move with their module)."""
        if self._param is None and self._data_t.device != device:
            host = self._sync_data.view(self._data_t).copy()
            self._data_t = torch.from_numpy(host).to(device)
            self._diff_t = None
            self._sync_data, self._sync_diff = _Synced(), _Synced()

    # -- pycaffe's surface -----------------------------------------------------------

    @property
    def data(self) -> np.ndarray:
        return self._sync_data.view(self._data_t)

    @property
    def diff(self) -> np.ndarray:
        diff = self.diff_tensor
        sync = self._sync_diff
        return sync.view(diff)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data_t.shape)

    @property
    def count(self) -> int:
        return int(self._data_t.numel())

    def _legacy(self, index: int, what: str) -> int:
        # Blob::LegacyShape: at most 4 axes; a missing axis counts as 1.
        if self._data_t.dim() > 4:
            raise ShapeError(f"blob.{what}: the blob has {self._data_t.dim()} axes "
                             f"{list(self.shape)}; num/channels/height/width need at most 4 "
                             "(use blob.shape)")
        return int(self.shape[index]) if index < self._data_t.dim() else 1

    @property
    def num(self) -> int:
        return self._legacy(0, "num")

    @property
    def channels(self) -> int:
        return self._legacy(1, "channels")

    @property
    def height(self) -> int:
        return self._legacy(2, "height")

    @property
    def width(self) -> int:
        return self._legacy(3, "width")

    def reshape(self, *dims: int) -> None:
        """Blob::Reshape.  As Caffe's SyncedMemory, a blob that does not grow keeps its
        memory, now read in the new shape (the first `count` values of data and diff,
        still shared with arrays handed out before); one that grows gets zeros.  (Caffe
        reallocates only beyond the largest count the blob ever had, so growing back after
        a shrink shows its old values there; here, zeros.)"""
        shape = []
        for k, d in enumerate(dims):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
                raise ShapeError(f"blob.reshape{tuple(dims)}: dimension {k} = {d!r}; allowed: "
                                 "non-negative ints, given positionally")
            shape.append(int(d))
        if tuple(shape) == self.shape:
            return
        if self._param is not None:
            raise PycaffeNotImplementedError(
                f"blob.reshape{tuple(dims)} of a parameter blob of shape {list(self.shape)} is "
                "not implemented yet in caffe_fx.pycaffe")
        who = f"blob.reshape{tuple(dims)}"
        count = math.prod(check_shape(shape, who))
        if count > self._data_t.numel():  # growing: data, and diff when it has one
            copies = 1 if self._diff_t is None else 2
            _memory.check_fits([("blob", copies * count * self._data_t.element_size())],
                               who, "its data and diff" if copies == 2 else "its data",
                               "give it a smaller shape")
        self._data_t = _kept(self._data_t, self._sync_data, shape, count)
        if self._diff_t is not None:
            self._diff_t = _kept(self._diff_t, self._sync_diff, shape, count)
        self._sync_data, self._sync_diff = _Synced(), _Synced()

    def __repr__(self) -> str:
        return f"<caffe_fx.pycaffe.Blob shape={list(self.shape)}>"
