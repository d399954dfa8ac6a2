"""Weights files mapped into memory copy-on-write, so parameters share the file's pages.

Frontend helper for wire.py (binary caffemodels), hdf5.py (contiguous float32 datasets)
and weights_io.py (.npy, stored .npz members; .pt and .safetensors map through torch's
and safetensors' own loaders by the same policy).  A map is MAP_PRIVATE: a
write to a parameter (an optimizer step) copies that page into the process, the file is
never written.  Pages nobody wrote still read the file, so a file changed in place
while a net uses it changes those weights, and one truncated under the map kills the
process with SIGBUS on the next read: caffe_fx's own writers replace files by rename
(safe), Caffe's snapshot writer truncates (not).  Hence the policy: files of at least
MIN_BYTES (16 MiB) are mapped, smaller ones read; CAFFE_FX_MMAP=0 always reads, =1
always maps.  Torch wants floats on a 4-byte boundary, and a map cannot move a value
(its address is the file offset modulo the page size), so unaligned data is copied
and the map's pages under it dropped.  benchmarks/LOAD.md measures it and says more.
"""
from __future__ import annotations

import mmap
import os

import numpy as np

from ..errors import WeightsError

MIN_BYTES = 16 << 20
ENV = "CAFFE_FX_MMAP"
_CHOICES = ("0", "1", "auto")


def wanted(size: int, choice: bool | None = None) -> bool:
    """Whether a weights file of `size` bytes is mapped: `choice` when given, else
    CAFFE_FX_MMAP (0, 1, or auto: files of at least MIN_BYTES); an empty file never."""
    if size <= 0:
        return False
    if choice is not None:
        return bool(choice)
    raw = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if raw not in _CHOICES:
        raise WeightsError(f"{ENV}={raw!r}; allowed: {', '.join(_CHOICES)} (0 reads weights "
                           f"into memory, 1 maps them, auto maps files of at least "
                           f"{MIN_BYTES >> 20} MiB)")
    return raw == "1" or (raw == "auto" and size >= MIN_BYTES)


def map_fd(fd: int, size: int) -> np.ndarray | None:
    """The first `size` bytes of an open file as a writable uint8 array over a private
    (copy-on-write) map; None when the file system cannot map it (the caller reads)."""
    try:
        mm = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError):
        return None
    return np.frombuffer(mm, dtype=np.uint8)


def map_path(path: str | os.PathLike) -> np.ndarray | None:
    """map_fd over a path, the whole file (None for an empty or unmappable file)."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        return map_fd(f.fileno(), size) if size else None


def is_mapped(array: np.ndarray) -> bool:
    """Whether `array` is a view of a map made here (for tests and `caffe-fx info`)."""
    return _mmap_of(array) is not None


def backing_file(array: np.ndarray) -> str | None:
    """The file whose map holds `array`'s first byte, from /proc/self/maps (Linux); None
    for anonymous memory.  How tests tell that weights share the file's pages."""
    address = array.ctypes.data
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if lo <= address < hi:
                    name = fields[5].strip() if len(fields) > 5 else ""
                    return name if name and not name.startswith("[") else None
    except OSError:
        return None
    return None


def view(buf: np.ndarray, offset: int, count: int, dtype: str = "<f4") -> np.ndarray:
    """`count` values at `offset` of a mapped buffer: a view when aligned to the item
    size, else an aligned copy (the only bytes a map cannot share)."""
    item = np.dtype(dtype).itemsize
    out = np.frombuffer(buf, dtype, count, offset)
    if (buf.ctypes.data + offset) % item:
        return copy(buf, out, offset)
    return out


def copy(buf: np.ndarray, values: np.ndarray, offset: int) -> np.ndarray:
    """`values` (a view of `buf` at `offset`) copied, and the map's pages that lie wholly
    inside them dropped from the process as the copy goes (MADV_DONTNEED: a private
    map's clean pages are read again from the file if touched), so that the copy's
    bytes do not count twice in RSS, not even while it runs."""
    mm = _mmap_of(buf)
    if mm is None or not hasattr(mm, "madvise") or values.nbytes < 2 * _CHUNK:
        out = values.copy()
        _drop(mm, offset, offset + values.nbytes)
        return out
    out = np.empty_like(values)
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    step = _CHUNK // values.itemsize
    for i in range(0, flat_in.size, step):
        flat_out[i:i + step] = flat_in[i:i + step]
        _drop(mm, offset, offset + min(i + step, flat_in.size) * values.itemsize)
    return out


_CHUNK = 16 << 20


def _drop(mm: mmap.mmap | None, start: int, end: int) -> None:
    """MADV_DONTNEED on the whole pages of [start, end) of the map."""
    if mm is None or not hasattr(mm, "madvise"):
        return
    page = mmap.PAGESIZE
    lo, hi = -(-start // page) * page, end // page * page
    if hi > lo:
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            pass  # only memory is at stake


def _mmap_of(array: np.ndarray) -> mmap.mmap | None:
    base: object = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer keeps the buffer's memoryview
        base = base.obj
    return base if isinstance(base, mmap.mmap) else None
