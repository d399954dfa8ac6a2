"""`caffe.Blob`: a named array whose `data` and `diff` are writable NumPy views.

pycaffe facade.  Mirrors the Blob bindings of python/caffe/_caffe.cpp (shape, count,
num/channels/height/width via Blob::LegacyShape, reshape(*dims)) over include/caffe/blob.hpp.
A blob either owns its float32 array (activations) or views a module's tensor
(parameters: writing `data` changes the next forward).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import PycaffeNotImplementedError, ShapeError


class Blob:
    """One Caffe blob; `data`/`diff` are re-fetched after `reshape` (as in pycaffe)."""

    def __init__(self, data: np.ndarray, tensor: torch.Tensor | None = None) -> None:
        self._data = data
        self._diff: np.ndarray | None = None
        self._tensor = tensor  # the parameter tensor `data` views, for parameter blobs

    @classmethod
    def of_tensor(cls, tensor: torch.Tensor) -> Blob:
        """A parameter blob: `data` shares memory with `tensor` (a CPU float32 tensor)."""
        return cls(tensor.detach().numpy(), tensor)

    @property
    def data(self) -> np.ndarray:
        return self._data

    @property
    def diff(self) -> np.ndarray:
        if self._diff is None or self._diff.shape != self._data.shape:
            self._diff = np.zeros_like(self._data)
        return self._diff

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def count(self) -> int:
        return int(self._data.size)

    def _legacy(self, index: int, what: str) -> int:
        # Blob::LegacyShape: at most 4 axes; a missing axis counts as 1.
        if self._data.ndim > 4:
            raise ShapeError(f"blob.{what}: the blob has {self._data.ndim} axes {list(self.shape)}; "
                             "num/channels/height/width need at most 4 (use blob.shape)")
        return int(self._data.shape[index]) if index < self._data.ndim else 1

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
        """Blob::Reshape; contents are undefined afterwards (zeros here) unless unchanged."""
        shape = []
        for k, d in enumerate(dims):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
                raise ShapeError(f"blob.reshape{tuple(dims)}: dimension {k} = {d!r}; allowed: "
                                 "non-negative ints, given positionally")
            shape.append(int(d))
        if tuple(shape) == self.shape:
            return
        if self._tensor is not None:
            raise PycaffeNotImplementedError(
                f"blob.reshape{tuple(dims)} of a parameter blob of shape {list(self.shape)} is "
                "not implemented yet in caffe_fx.pycaffe")
        self._data = np.zeros(shape, dtype=np.float32)
        self._diff = None

    def __repr__(self) -> str:
        return f"<caffe_fx.pycaffe.Blob shape={list(self.shape)}>"
