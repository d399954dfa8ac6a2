"""Writers on a full disk: one WriteError line naming the file, exit status 1, nothing
left behind.  torch.save, safetensors' save_file and torch.export/jit's own file writers
raised RuntimeError or SafetensorError tracebacks there, or aborted the process
(`terminate called after throwing an instance of 'c10::Error'`); they now serialize into
memory and the atomic writer makes the one write.

A 64 KiB tmpfs stands for the full disk: the test needs root and a system that lets it
mount one (it skips and says so elsewhere)."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from caffe_fx.cli import main
from tests.nets.oracle import MODELS

LENET = MODELS / "ethereon+caffe-tensorflow/examples/mnist"
WEIGHTS = LENET / "lenet_iter_10000.caffemodel"  # 1.7 MB


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Path]:
    if not WEIGHTS.exists():
        pytest.skip(f"needs ../shared/models ({WEIGHTS} is absent)")
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting the small tmpfs needs root on Linux")
    folder = tmp_path / "small"
    folder.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                           capture_output=True, text=True)
    if mount.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)  # -l: busy after a failure


@pytest.mark.parametrize("suffix", ["pt", "safetensors"])
def test_convert(full: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    if suffix == "safetensors":
        pytest.importorskip("safetensors")
    out = full / f"w.{suffix}"
    assert main(["convert", str(WEIGHTS), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"caffe-fx convert: error: {out}: cannot write it: No space left on "
                   "device"]
    assert not any(full.iterdir())


@pytest.mark.parametrize("suffix", ["pt2", "ts"])
def test_export(full: Path, suffix: str) -> None:
    """In a child process: before, the process aborted."""
    out = full / f"lenet.{suffix}"
    run = subprocess.run([sys.executable, "-m", "caffe_fx", "export",
                          str(LENET / "lenet.prototxt"), str(WEIGHTS), "-o", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.strip().splitlines() == [
        f"caffe-fx export: error: {out}: cannot write it: No space left on device"]
    assert not any(full.iterdir())
