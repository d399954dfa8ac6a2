"""Atomic file writes for every writer in caffe_fx: nothing is overwritten unasked.

A file is written under a temporary name in its own folder, flushed and fsync'ed, then
renamed over the target with os.replace, so readers see the old file or the whole new
one, never a torn one.  Caffe itself writes in place (WriteProtoToBinaryFile in
src/caffe/util/io.cpp); this is the safer behaviour the project asks for.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import OutputExistsError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Raises OutputExistsError when `path` exists and `force` is not set."""
    p = Path(path)
    if not force and (p.exists() or p.is_symlink()):
        raise OutputExistsError(
            f"{p}: already exists; refusing to overwrite it (pass force=True, or --force "
            "on the command line)")
    if p.is_dir():
        raise OutputExistsError(f"{p}: is a folder; a file was to be written there")
    return p


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, force: bool = False,
                 text: bool = False) -> Iterator[IO]:
    """`with atomic_write(path) as f: f.write(...)` writes `path` all at once or not at all.

    The temporary file lives in the target's folder (so os.replace never crosses file
    systems) and is removed if the body raises.  The existence check runs both before
    and just before the rename.
    """
    p = check_writable(path, force)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w" if text else "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        check_writable(p, force)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(p.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Like atomic_write, for writers that want a file name (h5py, torch.save, numpy):
    yields a temporary path in the target's folder, renamed over `path` on success."""
    p = check_writable(path, force)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        check_writable(p, force)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(p.parent)


def _umask() -> int:
    # mkstemp creates 0600 files; give the result the permissions open() would have.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
