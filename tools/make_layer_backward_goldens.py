"""Runs every golden layer case (tests/golden/cases) backward through real Caffe.

    python tools/make_layer_backward_goldens.py [--only SUBSTRING] [--jobs N]

Needs root, ../shared/caffe-oracle and the forward goldens (tools/make_goldens.py), whose
`meta` gives each case's outputs and loss weights.  Each net gets `force_backward: true`,
the same inputs and weights as its forward golden, and seeded random top diffs on its
outputs of loss weight 0; then pycaffe's Net.backward (src/caffe/net.cpp BackwardFromTo).
Writes tests/golden/layer_backward/<case>.npz in tools/make_backward_goldens.py's layout,
plus `after/<layer>/<i>` for params that forward changed (BatchNorm's running statistics);
an input blob's data is kept only as `input/<blob>` unless an in-place layer changed it.
Skipped, with the reason printed: cases with random blobs, and nets Caffe cannot
differentiate (the oracle aborts, e.g. Accuracy's and ArgMax's NOT_IMPLEMENTED Backward).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.golden.cases import Case, all_cases
from tests.nets.oracle import ORACLE, oracle_unavailable
from tools._oracle_goldens import write_golden
from tools.make_goldens import make_inputs

FORWARD = ROOT / "tests" / "golden" / "layers"
GOLDEN = ROOT / "tests" / "golden" / "layer_backward"


class Skipped(Exception):
    """A case this generator leaves out, with the reason."""


def top_diffs(case: Case, meta: dict) -> dict[str, np.ndarray]:
    """N(0, 1) diffs for the outputs that no loss weight seeds, seeded by the case name."""
    seed = int(hashlib.sha256(f"topdiff:{case.name}".encode()).hexdigest()[:8], 16)
    r = np.random.RandomState(seed)
    return {b: r.standard_normal(meta["blobs"][b]).astype(np.float32) for b in meta["outputs"]
            if meta["blob_loss_weights"].get(b, 0.0) == 0.0}


def _abort_reason(stderr: str) -> str:
    # glog's fatal lines: "F1126 01:54:06.802587 19279 file.cpp:79] message"
    lines = [ln.split("] ", 1)[-1] for ln in stderr.splitlines() if re.match(r"F\d{4} ", ln)]
    return (lines or stderr.strip().splitlines()[-1:] or ["no output"])[0].strip()


def _oracle(cmd: list[str], out: Path) -> dict[str, np.ndarray]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if re.search(r"^F\d{4} ", proc.stderr, re.MULTILINE):
            raise Skipped(f"Caffe cannot backward it: {_abort_reason(proc.stderr)}")
        raise RuntimeError(f"caffe-oracle failed:\n{proc.stderr[-2000:]}")
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def make_golden(case: Case) -> str:
    if case.random_blobs:
        raise Skipped(f"random blobs {list(case.random_blobs)}")
    forward = FORWARD / f"{case.name}.npz"
    if not forward.exists():
        raise Skipped(f"no forward golden {forward.relative_to(ROOT)}")
    with np.load(forward) as f:
        fmeta = json.loads(str(f["meta"]))
    prototxt = "force_backward: true\n" + case.prototxt
    inputs = make_inputs(case)
    diffs = top_diffs(case, fmeta)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "net.prototxt").write_text(prototxt)
        np.savez(t / "in.npz", **inputs)
        np.savez(t / "td.npz", **diffs)
        cmd = [str(ORACLE), "forward", str(t / "net.prototxt"), "--inputs", str(t / "in.npz"),
               "--out", str(t / "out.npz"), "--phase", case.phase, "--seed", "1",
               "--backward", "--topdiff", str(t / "td.npz")]
        got = _oracle(cmd + (["--randomize", "7"] if case.randomize else [])
                      + ["--save-weights", str(t / "w.caffemodel")], t / "out.npz")
        if "BatchNorm" in case.prototxt:
            # Forward moves BatchNorm's running statistics, so the params recorded are not
            # those it started from: run again from them, keeping both.
            start = {k: v for k, v in got.items() if k.startswith("param/")}
            got = _oracle(cmd + ["--weights", str(t / "w.caffemodel")], t / "out.npz")
            got.update({f"after/{k[6:]}": v for k, v in got.items()
                        if k.startswith("param/") and not np.array_equal(v, start[k])})
            got.update(start)
    meta = json.loads(str(got.pop("meta")))
    meta.update(case=case.name, prototxt=prototxt, phase=case.phase)
    record = {f"input/{k}": v for k, v in inputs.items()}
    record.update({f"topdiff/{k}": v for k, v in diffs.items()})
    # an input's data, unless an in-place layer changed it, is its input: not stored twice
    record.update({k: v.astype(np.float32) for k, v in got.items()
                   if not (k.startswith("data/") and f"input/{k[5:]}" in record
                           and np.array_equal(v, record[f"input/{k[5:]}"]))})
    record["meta"] = np.array(json.dumps(meta))
    return write_golden(GOLDEN, case.name, record)


def _run(case: Case) -> tuple[str, str]:
    try:
        try:
            return "ok", make_golden(case)
        except (RuntimeError, OSError):  # parallel oracle runs now and then fail to start
            return "ok", make_golden(case)
    except Skipped as e:
        return "skipped", f"{case.name}: skipped: {e}"
    except Exception as e:  # noqa: BLE001 - reported, and the run exits 1
        return "failed", f"{case.name}: failed: {e!r}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args()
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    cases = [c for c in all_cases() if a.only in c.name]
    with ThreadPoolExecutor(a.jobs) as pool:
        results = []
        for status, line in pool.map(_run, cases):
            print(line, flush=True)
            results.append((status, line))
    counts = {k: sum(s == k for s, _ in results) for k in ("ok", "skipped", "failed")}
    print(", ".join(f"{v} {k}" for k, v in counts.items()))
    sys.exit(1 if counts["failed"] else 0)


if __name__ == "__main__":
    main()
