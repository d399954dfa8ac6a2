"""Runs every golden case (tests/golden/cases) through real Caffe and writes the results.

    python tools/make_goldens.py [--only SUBSTRING] [--jobs N]

Needs root and ../shared/caffe-oracle (installs the reference Caffe on first use).
Writes tests/golden/layers/<case>.npz holding the oracle's record (data/<blob>,
param/<layer>/<i>, meta) plus `prototxt` (the net) and `input/<blob>` (what was fed).
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ORACLE = ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"
OUT = ROOT / "tests" / "golden" / "layers"

from tests.golden.cases import Case, all_cases  # noqa: E402


def make_inputs(case: Case) -> dict[str, np.ndarray]:
    seed = int(hashlib.sha256(case.name.encode()).hexdigest()[:8], 16)
    r = np.random.RandomState(seed)
    arrays = {}
    for blob, shape in case.inputs.items():
        if blob in case.integers:
            arrays[blob] = r.randint(0, case.integers[blob], size=shape).astype(np.float32)
        elif case.low is not None:
            arrays[blob] = r.uniform(case.low, case.high, size=shape).astype(np.float32)
        else:
            arrays[blob] = r.randn(*shape).astype(np.float32)
    return arrays


def run_case(case: Case) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "net.prototxt").write_text(case.prototxt)
        inputs = make_inputs(case)
        np.savez(t / "in.npz", **inputs)
        cmd = [str(ORACLE), "forward", str(t / "net.prototxt"), "--inputs", str(t / "in.npz"),
               "--out", str(t / "out.npz"), "--phase", case.phase, "--seed", "1"]
        if case.randomize:
            cmd += ["--randomize", "7"]
        if case.save_weights:
            cmd += ["--save-weights", str(t / "w.caffemodel")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{case.name}: oracle failed:\n{proc.stderr[-2000:]}"
        record = dict(np.load(t / "out.npz"))
        record["prototxt"] = np.array(case.prototxt)
        record["layer"] = np.array(case.layer)
        record["phase"] = np.array(case.phase)
        record["random_blobs"] = np.array(list(case.random_blobs), dtype=str)
        for blob, value in inputs.items():
            record[f"input/{blob}"] = value
        if case.save_weights:
            record["caffemodel"] = np.frombuffer((t / "w.caffemodel").read_bytes(), np.uint8)
        OUT.mkdir(parents=True, exist_ok=True)
        tmp_out = OUT / f".{case.name}.npz.tmp"
        with open(tmp_out, "wb") as f:
            np.savez_compressed(f, **record)
        tmp_out.replace(OUT / f"{case.name}.npz")
    return f"{case.name}: ok"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args()
    cases = [c for c in all_cases() if a.only in c.name]
    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(run_case, cases))
    failed = [r for r in results if not r.endswith(": ok")]
    print("\n".join(results))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
