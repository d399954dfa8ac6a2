"""Records what real Caffe reports for the nets `caffe-fx info` is tested on.

    python tools/make_info_goldens.py

Needs root, ../shared/caffe-oracle and ../shared/models (tests/cli/tiny_branches.prototxt
is ours).  For each net, one `caffe-oracle forward` at the input shapes below; writes
tests/golden/info/<name>.json with Caffe's layers (name, type, bottoms, tops), every
blob's shape and every layer's parameter blob shapes (net.params): shapes and counts
only, never weights or prototxt text.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import MODELS, ORACLE, oracle_unavailable  # noqa: E402

OUT = ROOT / "tests" / "golden" / "info"
_BVLC = "BVLC+caffe/models"

# name -> (prototxt, where it lives, input shapes fed)
NETS: dict[str, tuple[str, str, dict[str, list[int]]]] = {
    "tiny_branches": ("tests/cli/tiny_branches.prototxt", "repo", {"data": [2, 3, 12, 12]}),
    "lenet": ("ethereon+caffe-tensorflow/examples/mnist/lenet.prototxt", "models",
              {"data": [2, 1, 28, 28]}),
    "alexnet": (f"{_BVLC}/bvlc_alexnet/deploy.prototxt", "models", {"data": [1, 3, 227, 227]}),
    "googlenet": (f"{_BVLC}/bvlc_googlenet/deploy.prototxt", "models",
                  {"data": [1, 3, 224, 224]}),
}


def make_golden(name: str) -> str:
    rel, base, inputs = NETS[name]
    path = (ROOT if base == "repo" else MODELS) / rel
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        np.savez(t / "in.npz", **{k: np.zeros(s, np.float32) for k, s in inputs.items()})
        proc = subprocess.run(
            [str(ORACLE), "forward", str(path), "--inputs", str(t / "in.npz"),
             "--out", str(t / "out.npz"), "--phase", "test"],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        with np.load(t / "out.npz") as f:
            meta = json.loads(str(f["meta"]))
            params: dict[str, list[list[int]]] = {}
            for k in f.files:
                if k.startswith("param/"):
                    layer, i = k[len("param/"):].rsplit("/", 1)
                    params.setdefault(layer, []).append((int(i), list(f[k].shape)))
    golden = {
        "net": name, "prototxt": rel, "base": base, "inputs": inputs,
        "layers": [{k: layer[k] for k in ("name", "type", "bottoms", "tops")}
                   for layer in meta["layers"]],
        "blobs": meta["blobs"],
        "params": {k: [s for _, s in sorted(v)] for k, v in params.items()},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    out, tmp_out = OUT / f"{name}.json", OUT / f".{name}.json.tmp"
    tmp_out.write_text(json.dumps(golden, indent=1) + "\n")
    tmp_out.replace(out)
    return f"{name}: {len(golden['layers'])} layers, {len(golden['params'])} with params"


def main() -> None:
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    if not MODELS.exists():
        sys.exit(f"needs ../shared/models ({MODELS} is absent)")
    for name in NETS:
        print(make_golden(name), flush=True)


if __name__ == "__main__":
    main()
