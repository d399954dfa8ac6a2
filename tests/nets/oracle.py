"""Where ../shared lives, and one call into real Caffe (../shared/caffe-oracle).

Used by tests/conftest.py (fixtures), the whole-net tests and tools/make_net_goldens.py.
The oracle is BVLC Caffe 1.0 (src/caffe/net.cpp's Forward); it needs root.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MODELS = SHARED / "models"
ORACLE = SHARED / "caffe-oracle" / "caffe-oracle"


@contextmanager
def oracle_fork(fork: str | None) -> Iterator[None]:
    """CAFFE_ORACLE_FORK=fork (None or "": BVLC Caffe) for the oracle runs inside, and
    the variable as it was afterwards, so one fork's run never leaks into later ones."""
    before = os.environ.get("CAFFE_ORACLE_FORK")
    if fork:
        os.environ["CAFFE_ORACLE_FORK"] = fork
    else:
        os.environ.pop("CAFFE_ORACLE_FORK", None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CAFFE_ORACLE_FORK", None)
        else:
            os.environ["CAFFE_ORACLE_FORK"] = before


def oracle_unavailable() -> str | None:
    """Why the oracle cannot run here, or None when it can."""
    if not ORACLE.exists():
        return f"needs ../shared/caffe-oracle ({ORACLE} is absent)"
    if os.geteuid() != 0:
        return "needs root to run ../shared/caffe-oracle (it runs Caffe in a chroot)"
    return None


def run_oracle(net: str | Path, inputs: Mapping[str, np.ndarray], *,
               weights: str | Path | None = None, randomize: int | None = None,
               save_weights: str | Path | None = None, phase: str = "test",
               workdir: str | Path | None = None, backward: bool = False,
               topdiffs: Mapping[str, np.ndarray] | None = None
               ) -> tuple[dict[str, np.ndarray], dict]:
    """One Caffe forward pass over `inputs` (fed at their own shapes, reshaping the net).

    Returns ({"data/<blob>": array}, meta).  With `randomize`, learnable blobs get the
    oracle's seeded random values; `save_weights` writes them (or the loaded weights) as a
    binary .caffemodel.  `backward` then runs Net.backward (after setting `topdiffs` on
    those blobs) and adds "diff/<blob>", "param/<layer>/<i>" and "pdiff/<layer>/<i>"."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t = Path(tmp)
        np.savez(t / "in.npz", **{k: np.ascontiguousarray(v, dtype=np.float32)
                                  for k, v in inputs.items()})
        cmd = [str(ORACLE), "forward", str(net), "--inputs", str(t / "in.npz"),
               "--out", str(t / "out.npz"), "--phase", phase, "--seed", "1"]
        if weights is not None:
            cmd += ["--weights", str(weights)]
        if randomize is not None:
            cmd += ["--randomize", str(randomize)]
        if save_weights is not None:
            cmd += ["--save-weights", str(save_weights)]
        if backward:
            cmd += ["--backward"]
            if topdiffs:
                np.savez(t / "td.npz", **{k: np.ascontiguousarray(v, dtype=np.float32)
                                          for k, v in topdiffs.items()})
                cmd += ["--topdiff", str(t / "td.npz")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"caffe-oracle failed on {net}:\n{proc.stderr[-3000:]}")
        with np.load(t / "out.npz") as f:
            record = {k: f[k] for k in f.files if k.startswith("data/") or backward
                      and k.startswith(("diff/", "param/", "pdiff/"))}
            meta = json.loads(str(f["meta"]))
    return record, meta
