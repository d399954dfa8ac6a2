"""Caffe's HDF5 weights layout, /data/<layer>/<blob index>, read and written in one place.

Frontend: read.py's read_weights reads HDF5 caffemodels through it; weights_io.py's
save_caffemodel (`caffe-fx convert`) and caffe_fx.pycaffe's Net.save_hdf5/load_hdf5 use
the same functions.  Mirrors Net::ToHDF5 and Net::CopyTrainedLayersFromHDF5 in
src/caffe/net.cpp over hdf5_save_nd_dataset / hdf5_load_nd_dataset (src/caffe/util/hdf5.cpp):
a group per layer, a float32 dataset per blob the layer owns, no reshaping.  Large files
are mapped copy-on-write (mapped.py): a contiguous little-endian float32 dataset, as
Caffe writes them, is then a view of the map; any other is read and converted.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..errors import CaffeFxError, WeightsError, WriteError
from .._limits import check_shape
from . import mapped
from .files import path_argument

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str | os.PathLike) -> bool:
    """Whether the file starts with HDF5's signature (how HDF5 caffemodels are told)."""
    with open(path, "rb") as f:
        return f.read(len(SIGNATURE)) == SIGNATURE


def read_hdf5(path: str | os.PathLike, *, mmap: bool | None = None
              ) -> dict[str, list[np.ndarray | None]]:
    """{layer: [blob 0, blob 1, ...]} in the file's order; None where a layer's group has
    no dataset for an index below its last (a param the writer's layer shared from an
    earlier layer: Net::ToHDF5 writes only the blobs a layer owns).  `mmap` as in
    mapped.wanted (None: its policy)."""
    import h5py

    p = Path(path)
    out: dict[str, list[np.ndarray | None]] = {}
    try:
        buf, inode = _map(p, mmap)
        with h5py.File(p, "r") as f:
            # a user block shifts the file's addresses; a file replaced since it was
            # mapped is not the one h5py reads
            if buf is not None and (f.userblock_size or _inode(p.stat()) != inode):
                buf = None
            if "data" not in f:
                raise WeightsError(f"{p}: HDF5 file without the /data group of a caffemodel")
            group = f["data"]
            if not hasattr(group, "keys"):
                raise WeightsError(f"{p}: /data is a dataset; a caffemodel's /data is a group "
                                   "holding one group per layer")
            file_size = p.stat().st_size
            for name in group:
                layer = group[name]
                if not hasattr(layer, "keys"):
                    raise WeightsError(f"{p}: /data/{name} is a dataset where a layer's "
                                       "group belongs")
                try:
                    indices = sorted(int(k) for k in layer.keys())
                except ValueError as e:
                    raise WeightsError(f"{p}: /data/{name} holds datasets not named by "
                                       f"blob index 0, 1, ...: {sorted(layer.keys())}") from e
                blobs: list[np.ndarray | None] = [None] * (indices[-1] + 1 if indices else 0)
                datasets = [(i, layer[str(i)]) for i in indices]
                for _, ds in datasets:
                    _check_declared(ds, p, file_size)
                for i, ds in datasets:
                    view = _mapped_dataset(ds, buf) if buf is not None else None
                    blobs[i] = view if view is not None else _read_dataset(ds, p)
                out[name] = blobs
    except CaffeFxError:
        raise
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as e:
        # h5py's errors for a corrupt file (bad heap or B-tree signatures) are RuntimeErrors
        raise WeightsError(f"{p}: unreadable HDF5 caffemodel: {e}") from e
    return out


# Deflate cannot expand data more than ~1032 times; a larger ratio between a dataset's
# declared size and the bytes it stores means unwritten (fill-value) chunks, which
# Caffe's writer never leaves.
_MAX_EXPANSION = 1100
_MAX_CHUNKS = 1 << 16


def _check_declared(ds: object, p: Path, file_size: int) -> None:
    """A dataset's declared shape, checked against the bytes the file stores for it before
    anything is allocated: memory stays proportional to the data actually stored."""
    name = getattr(ds, "name", "?")
    if not hasattr(ds, "read_direct"):
        raise WeightsError(f"{p}: {name} is a group where a blob dataset belongs")
    shape = tuple(ds.shape or ())  # type: ignore[attr-defined]
    check_shape(shape, f"{p}: dataset {name}")
    count = math.prod(shape)
    try:
        declared = count * ds.dtype.itemsize  # type: ignore[attr-defined]
    except TypeError:  # a dtype without a size (vlen strings): the read refuses it
        declared = count
    stored = ds.id.get_storage_size()  # type: ignore[attr-defined]
    filtered = ds.id.get_create_plist().get_nfilters() > 0  # type: ignore[attr-defined]
    if count and (stored > file_size or declared > max(stored, 1) * (
            _MAX_EXPANSION if filtered else 1)):
        raise WeightsError(
            f"{p}: dataset {name} declares shape {list(shape)} ({declared} bytes) "
            f"but the file stores {stored} bytes for it (the file has {file_size}); a "
            "caffemodel stores every value of its blobs")
    chunks = ds.chunks  # type: ignore[attr-defined]
    if chunks:
        n = math.prod(-(-d // c) for d, c in zip(shape, chunks))
        if n > _MAX_CHUNKS:
            raise WeightsError(
                f"{p}: dataset {name} of shape {list(shape)} is split into {n} chunks of "
                f"{list(chunks)}; allowed: at most {_MAX_CHUNKS} chunks (Caffe writes "
                "contiguous datasets)")


def _map(p: Path, choice: bool | None) -> tuple[np.ndarray | None, tuple[int, int]]:
    """The whole file mapped copy-on-write when mapped.wanted says so, and its inode."""
    with open(p, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if not mapped.wanted(st.st_size, choice):
            return None, _inode(st)
        return mapped.map_fd(f.fileno(), st.st_size), _inode(st)


def _inode(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _mapped_dataset(ds: object, buf: np.ndarray) -> np.ndarray | None:
    """A view of the map for a contiguous, unfiltered little-endian float32 dataset
    (H5Dget_offset is its address in the file), None for any other (then it is read)."""
    d: Any = ds
    if d.dtype != np.dtype("<f4") or d.chunks is not None or d.external \
            or d.id.get_create_plist().get_nfilters():
        return None
    count = math.prod(d.shape or ())
    offset = d.id.get_offset()
    if offset is None or not count or offset + 4 * count > buf.size:
        return None
    return mapped.view(buf, offset, count).reshape(d.shape)


def _read_dataset(ds: object, p: Path) -> np.ndarray:
    """hdf5_load_nd_dataset: straight into the final float32 array (HDF5 converts)."""
    if not hasattr(ds, "read_direct"):
        raise WeightsError(f"{p}: {getattr(ds, 'name', '?')} is a group where a blob "
                           "dataset belongs")
    arr = np.empty(ds.shape, dtype=np.float32)  # type: ignore[attr-defined]
    if arr.size:
        ds.read_direct(arr)
    return arr


def write_hdf5(path: str | os.PathLike,
               layers: Iterable[tuple[str, Sequence[np.ndarray | None]]], *,
               force: bool = False, advance: Callable[[int], None] = lambda n: None) -> None:
    """Net::ToHDF5 (without diffs): a group /data/<layer> per layer given, a dataset <i>
    for each blob that is not None (a param shared from another layer is written by its
    owner only).  Atomic; replaces an existing file only with `force`."""
    import h5py

    path_argument(path, "the HDF5 file to write", WriteError)
    layers = list(layers)
    bad = [n for n, _ in layers if "/" in n or n in (".", "")]
    if bad:
        raise WeightsError(
            f"{path}: HDF5 caffemodels cannot hold layer names with '/' (HDF5 reads them as "
            f"nested groups, and Caffe would skip them): {', '.join(bad)}; write a binary "
            ".caffemodel instead")
    with atomic_path(path, force=force) as tmp, h5py.File(tmp, "w") as h5:
        data = h5.create_group("data")
        for name, blobs in layers:
            if name in data:
                continue  # a second layer of that name: Caffe matches the first
            group = data.create_group(name)
            for i, array in enumerate(blobs):
                if array is None:
                    continue
                # Caffe's HDF5 reader does not reshape: the dataset has the blob's shape.
                group.create_dataset(str(i), data=np.ascontiguousarray(array, np.float32))
                advance(array.nbytes)
