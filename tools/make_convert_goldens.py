"""Real caffemodels and real Caffe outputs for the `convert` tests (tests/cli/test_convert.py).

    python tools/make_convert_goldens.py

Needs root and ../shared/caffe-oracle.  For each tests/golden/convert/<net>.prototxt (small
nets of our own), real Caffe fills every learnable blob (`--randomize 7`), saves them as
<net>.caffemodel and runs one forward pass on a seeded input; <net>.npz keeps what it
recorded: `input/<blob>`, `data/<blob>`, `param/<layer>/<i>` and `meta` (Caffe's
src/caffe/net.cpp Forward, Net::ToProto + WriteProtoToBinaryFile for the caffemodel).
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

from tests.nets.oracle import ORACLE, oracle_unavailable

GOLDEN = ROOT / "tests" / "golden" / "convert"
RANDOMIZE = 7


def oracle_forward(net: Path, inputs: dict[str, np.ndarray], out_dir: Path, *,
                   weights: Path | None = None, save_weights: Path | None = None
                   ) -> dict[str, np.ndarray]:
    """One `caffe-oracle forward`; returns every array it recorded (and `meta`)."""
    np.savez(out_dir / "in.npz", **inputs)
    cmd = [str(ORACLE), "forward", str(net), "--inputs", str(out_dir / "in.npz"),
           "--out", str(out_dir / "out.npz")]
    if weights is not None:
        cmd += ["--weights", str(weights)]
    if save_weights is not None:
        cmd += ["--randomize", str(RANDOMIZE), "--save-weights", str(save_weights)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe-oracle failed on {net}:\n{proc.stderr[-3000:]}")
    with np.load(out_dir / "out.npz") as f:
        return {k: f[k] for k in f.files}


def input_shapes(net: Path) -> dict[str, tuple[int, ...]]:
    from caffe_fx.frontend.read import read_net

    return {lp.top[0]: tuple(lp.input_param.shape[0].dim)
            for lp in read_net(net).layer if lp.type == "Input"}


def make_inputs(net: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in input_shapes(net).items()}


def main() -> int:
    why = oracle_unavailable()
    if why:
        print(why, file=sys.stderr)
        return 1
    for proto in sorted(GOLDEN.glob("*.prototxt")):
        inputs = make_inputs(proto)
        with tempfile.TemporaryDirectory() as tmp:
            rec = oracle_forward(proto, inputs, Path(tmp),
                                 save_weights=GOLDEN / f"{proto.stem}.caffemodel")
        keep = {f"input/{k}": v for k, v in inputs.items()}
        keep.update({k: v.astype(np.float32) for k, v in rec.items()
                     if k.startswith(("data/", "param/"))})
        keep["meta"] = np.array(json.dumps(json.loads(str(rec["meta"]))))
        np.savez_compressed(GOLDEN / f"{proto.stem}.npz", **keep)
        print(f"{proto.stem}: {len(keep)} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
