"""`caffe-fx train --procs 2` (gloo): Caffe's multi-GPU semantics on two CPU processes.

Each rank reads the HDF5 rows HDF5DataLayer::Skip gives it (rows r, r+2, ...), gradients
are averaged, rank 0 alone logs, tests and snapshots.  A step then sees the 8 rows that one
process with `iter_size: 2` sees in two passes, so after 8 iterations the weights equal
that run's within 1e-5 (ours, tests/cli's golden net), and real Caffe's iter_size 2 run's
within 1e-4 (tests/golden/cli/trained_iter2.caffemodel).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from caffe_fx.cli import main
from tests.cli.test_train import GOLDEN, assert_weights, workdir

ROOT = Path(__file__).resolve().parents[2]


def train_cli(work: Path, *argv: str, launcher: tuple[str, ...] = ()) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, *launcher, "-m", "caffe_fx", "train", *argv],
                          cwd=work, env=env, capture_output=True, text=True, timeout=400,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def test_two_processes_train_as_iter_size_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    single = workdir(tmp_path / "single")
    monkeypatch.chdir(single)
    assert main(["train", "-solver", "solver_iter2.prototxt", "-weights", "init.caffemodel"]) == 0
    capsys.readouterr()
    multi = workdir(tmp_path / "multi")
    out = train_cli(multi, "-solver", "solver.prototxt", "-weights", "init.caffemodel",
                    "--procs", "2")
    assert out[0] == "Use CPU: 2 processes (gloo)"
    # rank 0 alone logs and tests: each line once
    assert out.count("Iteration 0, Testing net (#0)") == 1
    assert out.count("Optimization Done.") == 2  # Solve's and caffe train's, as Caffe
    assert sorted(os.listdir(multi / "snap")) == ["solver_iter_8.caffemodel",
                                                  "solver_iter_8.solverstate"]
    got = multi / "snap" / "solver_iter_8.caffemodel"
    assert_weights(got, single / "snap" / "solver_iter2_iter_8.caffemodel", 1e-5)
    assert_weights(got, GOLDEN / "trained_iter2.caffemodel", 1e-4)
    # the test net is not split among ranks: its last scores are the iter_size 2 run's
    want = (GOLDEN / "caffe_train_iter2.txt").read_text().splitlines()
    assert out[-4:-2] == want[-4:-2]


@pytest.mark.slow
def test_torchrun_joins_from_the_environment(tmp_path: Path) -> None:
    work = workdir(tmp_path)
    out = train_cli(work, "-solver", "solver.prototxt", "-weights", "init.caffemodel",
                    launcher=("-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node", "2"))
    assert out.count("Iteration 0, Testing net (#0)") == 1
    assert_weights(work / "snap" / "solver_iter_8.caffemodel",
                   GOLDEN / "trained_iter2.caffemodel", 1e-4)


@pytest.mark.slow
def test_ctrl_c_stops_the_root_with_a_snapshot(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the group: the root snapshots and stops (its
    -sigint_effect), the others end with it, and the run exits 0 as the root did."""
    import signal

    work = workdir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "caffe_fx", "train", "-solver",
                             "solver.prototxt", "-weights", "init.caffemodel", "--procs", "2",
                             "-iterations", "1000000"], cwd=work, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Iteration 4, lr"):
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "Optimization stopped early." in rest.splitlines()
    snaps = sorted(os.listdir(work / "snap"))
    assert len(snaps) == 2 and all(s.startswith("solver_iter_") for s in snaps)
