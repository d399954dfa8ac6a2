"""SIGINT and SIGHUP during solve(), in a subprocess, as Caffe's tool handles them
(tools/caffe.cpp -sigint_effect stop, -sighup_effect snapshot; Solver::Step checks the
request after each update): SIGHUP snapshots and goes on, SIGINT stops after a snapshot;
the handlers are in place only while solve() runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training._common import GOLDEN

SCRIPT = r'''
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import caffe_fx
sigint, sighup = sys.argv[2], sys.argv[3]
with np.load("inputs.npz") as z:
    batch = {"data": z["data@0"], "label": z["label@0"]}
s = caffe_fx.Solver("long_solver.prototxt", device="cpu", inputs=lambda it: batch,
                    on_sigint=sigint, on_sighup=sighup)
def on_start():
    if s.iter == 3:
        os.kill(os.getpid(), signal.SIGHUP)
    if s.iter == 6:
        os.kill(os.getpid(), signal.SIGINT)
s.add_callback(on_start, None)
before = signal.getsignal(signal.SIGINT)
s.solve()
print(json.dumps({"iter": s.iter, "files": sorted(os.listdir("snap")),
                  "restored": signal.getsignal(signal.SIGINT) is before}))
'''


def run(work: Path, sigint: str, sighup: str) -> dict:
    (work / "snap").mkdir()
    (work / "long_solver.prototxt").write_text(
        'net: "tiny.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 20\n'
        'snapshot_prefix: "snap/long"\n')
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(Path(__file__).parents[2]),
                           sigint, sighup], cwd=work, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def names(*iters: int) -> list[str]:
    return sorted(f"long_iter_{i}{ext}" for i in iters for ext in (".caffemodel", ".solverstate"))


def test_sighup_snapshots_and_sigint_stops(work: Path) -> None:
    got = run(work, "stop", "snapshot")
    # SIGHUP during iteration 3: snapshot after its update (iter 4); SIGINT during 6: stop
    # after its update, then Solve's snapshot_after_train (iter 7).
    assert got == {"iter": 7, "files": names(4, 7), "restored": True}


def test_effects_none_and_swapped(work: Path) -> None:
    got = run(work, "none", "none")
    assert got == {"iter": 20, "files": names(20), "restored": True}


def test_sigint_snapshot_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("tiny.prototxt", "inputs.npz"):
        (tmp_path / name).write_bytes((GOLDEN / name).read_bytes())
    got = run(tmp_path, "snapshot", "stop")
    # SIGHUP (stop) at iteration 3: stopped after iter 4's snapshot by snapshot_after_train
    assert got == {"iter": 4, "files": names(4), "restored": True}
