"""The fuzz suite: seeded mutations of prototxt text, NetParameter structure, binary and
HDF5 caffemodels (tests/fuzz/_harness.py), each case in a forked child under a memory and
a time cap, where compile() may only succeed or raise a caffe_fx.errors subclass.

A short run (a few cases of each kind, a fixed seed) is part of the normal suite.  The
long run is marked `fuzz` and runs only with CAFFE_FX_FUZZ=1:
    CAFFE_FX_FUZZ=1 CAFFE_FX_FUZZ_CASES=2000 CAFFE_FX_FUZZ_SEED=5 python -m pytest -m fuzz tests/fuzz
Each failing case is printed as a JSON line with its input: save its prototxt (and its
weights, from weights_bytes) under tests/fuzz/regressions/ as <name>.prototxt and
<name>.w.caffemodel[.h5], and fix the root cause.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fuzz(seed: int, cases: int, timeout: float) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz._harness", str(seed), str(cases)], cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    failures = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == (1 if failures else 0), proc.stderr[-3000:]
    return failures


def _report(failures: list[dict]) -> str:
    return "\n".join(f"{f['kind']} seed {f['seed']} case {f['index']}: {f['error']}: "
                     f"{f.get('message', '')[:300]}" for f in failures)


def test_short_fuzz_run():
    failures = _fuzz(seed=12, cases=6, timeout=240)
    assert not failures, _report(failures)


@pytest.mark.fuzz
@pytest.mark.skipif(os.environ.get("CAFFE_FX_FUZZ") != "1",
                    reason="the long fuzz run: set CAFFE_FX_FUZZ=1 (and CAFFE_FX_FUZZ_CASES)")
def test_long_fuzz_run():
    cases = int(os.environ.get("CAFFE_FX_FUZZ_CASES", "500"))
    seed = int(os.environ.get("CAFFE_FX_FUZZ_SEED", "1"))
    failures = _fuzz(seed=seed, cases=cases, timeout=None)
    assert not failures, _report(failures)
