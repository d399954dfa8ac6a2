"""Atomic file writes for every writer in caffe_fx: nothing is overwritten unasked.

A file is written under a temporary name in its own folder, flushed and fsync'ed, then
renamed over the target with os.replace, so readers see the old file or the whole new
one, never a torn one.  Caffe itself writes in place (WriteProtoToBinaryFile in
src/caffe/util/io.cpp); this is the safer behaviour the project asks for.  Temporary
names carry the writer's process id (`.<name>.<pid>.<random>.tmp`): a writer killed
mid-write leaves one behind, and the next write to that target removes it once that
process is gone.  A system error while writing (a read-only or missing folder, a full
disk) is a WriteError naming the path.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import CaffeFxError, OutputExistsError, WriteError, spelled


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Raises OutputExistsError when `path` exists and `force` is not set."""
    p = Path(path)
    if not force and (p.exists() or p.is_symlink()):
        raise OutputExistsError(
            f"{p}: already exists; refusing to overwrite it (pass "
            f"{spelled('force=True, or --force on the command line', '--force')})")
    if p.is_dir():
        raise OutputExistsError(f"{p}: is a folder; a file was to be written there")
    return p


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: leave its file alone
    return True


def clean_stale(target: Path) -> list[Path]:
    """Removes temporary files and folders of ours for `target` whose writer is gone."""
    removed = []
    prefix = f".{target.name}."
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):-len(".tmp")].split(".", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def _prepare(p: Path) -> str:
    """Checks the target's folder and cleans stale temporaries; the temp-name prefix.
    A missing folder is an error, not made: a mistyped path must not grow folders."""
    folder = p.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise WriteError(f"{p}: cannot write it: the folder {folder} {what}; make it first "
                         "or write somewhere else")
    clean_stale(p)
    return f".{p.name}.{os.getpid()}."


def _write_error(p: Path, e: OSError) -> WriteError:
    return WriteError(f"{p}: cannot write it: {e.strerror or e}")


@contextlib.contextmanager
def _temporary(path: str | os.PathLike, force: bool) -> Iterator[tuple[Path, int, str]]:
    """(target, descriptor, name) of a new temporary file in the target's folder,
    renamed over the target when the body succeeds and removed when it raises.  The
    existence check runs both before and just before the rename."""
    p = check_writable(path, force)
    prefix = _prepare(p)
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise _write_error(p, e) from e
    try:
        yield p, fd, tmp
        check_writable(p, force)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, CaffeFxError):
            raise _write_error(p, e) from e
        raise
    _fsync_dir(p.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, force: bool = False,
                 text: bool = False) -> Iterator[IO]:
    """`with atomic_write(path) as f: f.write(...)` writes `path` all at once or not at all.

    The temporary file lives in the target's folder (so os.replace never crosses file
    systems) and is removed if the body raises.  The existence check runs both before
    and just before the rename.
    """
    with _temporary(path, force) as (_, fd, _tmp):
        with os.fdopen(fd, "w" if text else "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Like atomic_write, for writers that want a file name (h5py, torch.save, numpy):
    yields a temporary path in the target's folder, renamed over `path` on success."""
    with _temporary(path, force) as (_, fd, tmp):
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A new folder all at once or not at all: yields a temporary folder next to `path`,
    renamed to `path` when the body succeeds (removed when it fails).  `path` must not
    exist (writers that add files to an existing folder replace them one by one)."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        raise OutputExistsError(f"{p}: already exists; a new folder was to be made there")
    prefix = _prepare(p)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=p.parent))
    except OSError as e:
        raise _write_error(p, e) from e
    try:
        yield tmp
        for f in tmp.iterdir():
            with contextlib.suppress(OSError), open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~_umask())
        if p.exists() or p.is_symlink():
            raise OutputExistsError(f"{p}: appeared while it was written; not replaced")
        os.rename(tmp, p)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, CaffeFxError):
            raise _write_error(p, e) from e
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
