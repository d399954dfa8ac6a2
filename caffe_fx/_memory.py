"""What a net is about to allocate, checked against the memory the machine has left.

Used where caffe_fx takes memory a prototxt decides: binding.bind (parameters the
fillers fill), the pycaffe Net (its blobs, at set-up and on reshape), Blob.reshape and
the data feed's read-ahead batches.  Caffe allocates
each blob at its first use and dies in its allocator or to the kernel's OOM killer when
the machine has too little; with Linux's overcommit an allocation even succeeds and the
process is killed later, while the fillers write.  Here the whole request is compared
first with MemAvailable + SwapFree (/proc/meminfo) and, in a cgroup v2 container, the
group's memory.max less memory.current.  Unknown elsewhere (no check); CAFFE_FX_MEMORY_CHECK=0
switches it off.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import MemoryLimitError


def _meminfo() -> int | None:
    try:
        fields = dict(line.split(":", 1) for line in
                      Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError):
        return None


def _cgroup() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def available() -> int | None:
    """Bytes this process can still take, or None where that is unknown or the check is
    off."""
    if os.environ.get("CAFFE_FX_MEMORY_CHECK", "1") == "0":
        return None
    known = [n for n in (_meminfo(), _cgroup()) if n is not None]
    return min(known) if known else None


def _size(n: float) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def check_fits(items: Iterable[tuple[str, int]], where: str, what: str, remedy: str) -> None:
    """Raise MemoryLimitError if the (name, bytes) items together exceed what is
    available, naming the largest; `what` says what they are ("the blobs", ...) and
    `remedy` what makes them smaller."""
    items = list(items)
    total = sum(n for _, n in items)
    free = available() if total > (64 << 20) else None  # small nets: no file read
    if free is None or total <= free:
        return
    largest = sorted(items, key=lambda item: -item[1])[:3]
    names = ", ".join(f"{name} {_size(n)}" for name, n in largest)
    parts = f" (the largest: {names})" if len(items) > 1 else ""
    raise MemoryLimitError(
        f"{where}: {what}: {_size(total)}{parts}, more than the "
        f"{_size(free)} this machine has available; {remedy}, or set "
        "CAFFE_FX_MEMORY_CHECK=0 to allocate anyway")
