"""Writes tests/golden/wire/: a small caffemodel saved by real Caffe, for wire.py's tests.

Runs BVLC Caffe 1.0 (../shared/caffe-oracle, as root) on a small net with Convolution,
BatchNorm, Scale and InnerProduct layers, with well-scaled random weights, and records:

  small.prototxt       the net
  small.caffemodel     Caffe's Net::ToProto of it (--save-weights), about 3 KB
  small_params.npz     every parameter blob as Caffe's Net holds it ("<layer>/<i>")

Developer tool, run by hand:  sudo python tools/make_wire_goldens.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "wire"
ORACLE = ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"

NET = """name: "small"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
        scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
        inner_product_param { num_output: 5 } }
"""


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        net, model, out = t / "small.prototxt", t / "small.caffemodel", t / "out.npz"
        net.write_text(NET)
        np.savez(t / "in.npz", data=np.random.default_rng(0).standard_normal(
            (2, 3, 6, 6)).astype(np.float32))
        subprocess.run([str(ORACLE), "forward", str(net), "--inputs", str(t / "in.npz"),
                        "--randomize", "7", "--save-weights", str(model), "--out", str(out)],
                       check=True)
        with np.load(out) as f:
            params = {k[len("param/"):]: f[k] for k in f.files if k.startswith("param/")}
        for name, data in (("small.prototxt", NET.encode()),
                           ("small.caffemodel", model.read_bytes())):
            tmp_path = GOLDEN / (name + ".tmp")
            tmp_path.write_bytes(data)
            tmp_path.replace(GOLDEN / name)
        tmp_npz = GOLDEN / "small_params.tmp.npz"
        np.savez(tmp_npz, **params)
        tmp_npz.replace(GOLDEN / "small_params.npz")
    print(f"wrote {GOLDEN}: {sorted(params)}", file=sys.stderr)


if __name__ == "__main__":
    main()
