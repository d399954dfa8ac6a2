"""Scripts run under real pycaffe in the reference Caffe chroot (install.sh's /opt/caffe-ref).

Shared by the generators that need pycaffe behaviour the oracle's commands do not expose
(make_io, make_pycaffe, make_pycaffe_misc, make_net_spec and make_notebook_goldens):
a work folder the chroot sees, one clean-environment python3 run, and the swap of a
finished golden folder into place.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def chroot_workdir(caffe_root: Path, prefix: str) -> Iterator[tuple[Path, str]]:
    """A temporary folder under the chroot's /tmp: (its path here, its path inside)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=Path(caffe_root) / "tmp"))
    try:
        yield work, "/" + work.relative_to(caffe_root).as_posix()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_in_chroot(caffe_root: Path, script: str, argv: Sequence[str] = ()) -> None:
    """`python3 SCRIPT ARGV` (paths as the chroot sees them) under real pycaffe, in a clean
    environment with glog quiet; raises with the end of its stderr if it fails."""
    proc = subprocess.run(
        ["chroot", str(caffe_root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
         "HOME=/root", "GLOG_minloglevel=2", "PYTHONDONTWRITEBYTECODE=1",
         "python3", script, *argv],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"real pycaffe failed on {script} (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")


def replace_folder(target: Path, work: Path, names: Iterable[str]) -> None:
    """`target` becomes a folder holding work/<name> for each name (files or folders),
    built as a sibling and swapped in: never a half-written golden set."""
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in names:
        source = work / name
        if source.is_dir():
            shutil.copytree(source, staging / name)
        else:
            shutil.copy(source, staging / name)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
