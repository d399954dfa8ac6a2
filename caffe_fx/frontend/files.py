"""The one check every file reader runs before it opens a file.

Frontend helper for prototxts (read.py), caffemodels (read.py, wire.py, hdf5.py) and the
weight formats of weights_io.py.  A path must name an existing, readable regular file:
a folder, a FIFO (which would block the reader forever) or a device such as /dev/zero
(which never ends) is refused with the reader's error class before anything is read.
Prototxt text is capped at MAX_TEXT_BYTES (64 MiB; CAFFE_FX_MAX_PROTOTXT_BYTES changes
it): published nets are a few KB, and protobuf's text parser holds the whole text.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import CaffeFxError

MAX_TEXT_BYTES = 64 << 20


def max_text_bytes() -> int:
    raw = os.environ.get("CAFFE_FX_MAX_PROTOTXT_BYTES", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else MAX_TEXT_BYTES


def path_argument(value: object, what: str, error: type[CaffeFxError]) -> str:
    """os.fspath(value) for a str or os.PathLike; anything else (None, a module given
    where its file belongs) is `error` saying what `what` was given as."""
    if not isinstance(value, (str, os.PathLike)):
        raise error(f"{what} is given as {type(value).__name__}; allowed: a path (str or "
                    "os.PathLike)")
    return os.fspath(value)


def check_file(path: str | os.PathLike, what: str, error: type[CaffeFxError], *,
               max_bytes: int | None = None) -> Path:
    """`path` as a Path once it is known to be a readable regular file (of at most
    `max_bytes`), else `error` naming the path, what was expected and what it is."""
    raw = path_argument(path, f"the {what} file", error)
    if raw in ("", b""):
        raise error(f"an empty path was given where a {what} belongs; allowed: the path "
                    f"of a {what} file")
    p = Path(raw)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{p}: no such {what} file") from None
    except OSError as e:
        raise error(f"{p}: cannot read the {what}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a folder; a {what} file was expected")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a character device"
                if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise error(f"{p}: is {kind}; a {what} must be a regular file")
    if not os.access(p, os.R_OK):
        raise error(f"{p}: cannot read the {what}: permission denied")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{p}: {st.st_size} bytes is larger than the {max_bytes} bytes allowed "
                    f"for a {what} (CAFFE_FX_MAX_PROTOTXT_BYTES changes the limit)")
    return p
