"""pycaffe's multi-process training (caffe.NCCL, BVLC's python/train.py) on two CPU
processes over gloo.  Each rank reads the HDF5 rows DataLayer::Skip gives it and the
gradients are averaged, so 8 iterations equal real Caffe's `iter_size: 2` run on one
process (tests/golden/cli/trained_iter2.caffemodel) within 1e-4, on both ranks, whether
the NCCL reduces layer by layer (net.after_backward(nccl), Caffe's default) or once per
iteration (layer_wise_reduce: false).  Rank 0 alone logs and tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_train import GOLDEN, assert_weights, workdir

ROOT = Path(__file__).resolve().parents[2]


def train(work: Path, *extra: str) -> subprocess.CompletedProcess:
    tmp = work / "tmp"  # where caffe.NCCL.new_uid() puts the ranks' rendezvous file
    tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.distributed.pycaffe_train", "solver.prototxt",
         "init.caffemodel", "2", *extra], cwd=work,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp)),
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp.glob("caffe_fx_nccl_*")) == []  # the rendezvous went with the parent
    return proc


@pytest.mark.parametrize("layer_wise", [True, False])
def test_python_train_py_on_two_processes_trains_as_iter_size_2(tmp_path, layer_wise):
    work = workdir(tmp_path)
    if not layer_wise:
        solver = work / "solver.prototxt"
        solver.write_text(solver.read_text() + "layer_wise_reduce: false\n")
    proc = train(work, *(["--timing"] if layer_wise else []))
    for rank in (0, 1):
        assert_weights(work / f"rank{rank}.caffemodel", GOLDEN / "trained_iter2.caffemodel",
                       1e-4)
    assert_weights(work / "rank1.caffemodel", work / "rank0.caffemodel", 0)
    if layer_wise:  # train.py's --timing: rank 0's per-layer table, each display once
        log = proc.stderr.splitlines()
        assert log.count("Iteration 4, Testing net (#0)") == 1
        assert sum(line.startswith("forw   1       ip : ") for line in log) == 4
        assert sum(line.startswith("back   1       ip : ") for line in log) == 4
        assert any(line.startswith("solver total: ") for line in log)


def test_nccl_needs_a_solver_and_its_uid():
    import caffe_fx.pycaffe as caffe
    from caffe_fx.errors import InputError

    with pytest.raises(InputError, match=r"caffe.NCCL\(None, uid\): the first argument"):
        caffe.NCCL(None, caffe.NCCL.new_uid())
    assert caffe.NCCL.new_uid() != caffe.NCCL.new_uid()
    assert caffe.NCCL.new_uid().startswith("file://")
