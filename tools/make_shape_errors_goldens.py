"""Writes tests/golden/shape_errors/checks.json: the CHECK real Caffe aborts with when a
net is set up on the shapes that tests/api/test_forward_shape_errors.py feeds a compiled
net at forward time.

Per case: `body` (the layers after the Input layers), `good` (the input shapes the net
is compiled with), `bad` (the shapes Caffe is set up with, and caffe_fx is fed), and
`caffe`: glog's fatal line from `caffe-oracle forward` ("file.cpp:N] Check failed: ...").
The test asserts that the text caffe_fx quotes as Caffe's is in that line.

Developer tool, run by hand (root, for the chroot):
    sudo python tools/make_shape_errors_goldens.py [--force]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from caffe_fx._atomic import atomic_write  # noqa: E402
from tests.nets.oracle import ORACLE, oracle_unavailable  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "shape_errors" / "checks.json"


def _layer(name: str, kind: str, bottoms: str, extra: str = "", tops: str = "") -> str:
    bottom = " ".join(f'bottom: "{b}"' for b in bottoms.split())
    top = " ".join(f'top: "{t}"' for t in (tops or name).split())
    return f'layer {{ name: "{name}" type: "{kind}" {bottom} {top} {extra} }}'


# case: (body, good input shapes, bad input shapes)
CASES = {
    "eltwise": (_layer("e", "Eltwise", "a b"), {"a": [2, 3, 4, 4], "b": [2, 3, 4, 4]},
                {"a": [2, 3, 4, 4], "b": [2, 3, 5, 5]}),
    "concat_shape": (_layer("cat", "Concat", "a b"), {"a": [2, 3, 4], "b": [2, 5, 4]},
                     {"a": [2, 3, 4], "b": [2, 5, 6]}),
    "concat_axes": (_layer("cat", "Concat", "a b"), {"a": [2, 3, 4], "b": [2, 5, 4]},
                    {"a": [2, 3, 4], "b": [2, 5]}),
    "slice_equal": (_layer("s", "Slice", "x", tops="p q"), {"x": [2, 6]}, {"x": [2, 7]}),
    "slice_point": (_layer("s", "Slice", "x", "slice_param { slice_point: 4 }", "p q"),
                    {"x": [2, 6]}, {"x": [2, 3]}),
    "reshape_count": (_layer("r", "Reshape", "x",
                             "reshape_param { shape { dim: 0 dim: 2 dim: 3 } }"),
                      {"x": [2, 6]}, {"x": [2, 7]}),
    "reshape_inferred": (_layer("r", "Reshape", "x",
                                "reshape_param { shape { dim: 4 dim: -1 } }"),
                         {"x": [2, 6]}, {"x": [1, 6]}),
    "crop": (_layer("c", "Crop", "x ref", "crop_param { axis: 2 offset: 3 }"),
             {"x": [1, 2, 8, 8], "ref": [1, 2, 4, 4]}, {"x": [1, 2, 8, 8], "ref": [1, 2, 6, 4]}),
    "scale_mismatch": (_layer("l", "Scale", "x s"), {"x": [2, 3, 4], "s": [3]},
                       {"x": [2, 3, 4], "s": [4]}),
    "scale_past": (_layer("l", "Scale", "x s"), {"x": [2, 3, 4], "s": [3]},
                   {"x": [2, 3], "s": [3, 4]}),
    "bias_mismatch": (_layer("l", "Bias", "x s"), {"x": [2, 3, 4], "s": [3]},
                      {"x": [2, 3, 4], "s": [4]}),
    "bias_past": (_layer("l", "Bias", "x s"), {"x": [2, 3, 4], "s": [3]},
                  {"x": [2, 3], "s": [3, 4]}),
    "softmax_loss_labels": (_layer("l", "SoftmaxWithLoss", "x y"),
                            {"x": [2, 5, 3], "y": [2, 3]}, {"x": [2, 5, 3], "y": [2, 4]}),
    "softmax_loss_first": (_layer("l", "SoftmaxWithLoss", "x y"), {"x": [2, 3], "y": [2]},
                           {"x": [2, 3], "y": [3]}),
    "accuracy_labels": (_layer("l", "Accuracy", "x y"), {"x": [2, 5, 3], "y": [2, 3]},
                        {"x": [2, 5, 3], "y": [2, 4]}),
    "infogain_labels": (_layer("l", "InfogainLoss", "x y h"),
                        {"x": [2, 3], "y": [2], "h": [3, 3]},
                        {"x": [2, 3], "y": [2, 2], "h": [3, 3]}),
    "sigmoid_ce_first": (_layer("l", "SigmoidCrossEntropyLoss", "x y"),
                         {"x": [2, 3], "y": [2, 3]}, {"x": [2, 3], "y": [3, 3]}),
    "sigmoid_ce_count": (_layer("l", "SigmoidCrossEntropyLoss", "x y"),
                         {"x": [2, 3], "y": [2, 3]}, {"x": [2, 3], "y": [2, 4]}),
    "euclidean_first": (_layer("l", "EuclideanLoss", "x y"), {"x": [2, 3], "y": [2, 3]},
                        {"x": [2, 3], "y": [3, 3]}),
    "euclidean_count": (_layer("l", "EuclideanLoss", "x y"), {"x": [2, 3], "y": [2, 3]},
                        {"x": [2, 3], "y": [2, 4]}),
    "hinge_first": (_layer("l", "HingeLoss", "x y"), {"x": [2, 3], "y": [2]},
                    {"x": [2, 3], "y": [3]}),
    "mlogistic_first": (_layer("l", "MultinomialLogisticLoss", "x y"), {"x": [2, 3], "y": [2]},
                        {"x": [2, 3], "y": [3]}),
    "mlogistic_label": (_layer("l", "MultinomialLogisticLoss", "x y"), {"x": [2, 3], "y": [2]},
                        {"x": [2, 3], "y": [2, 2]}),
    "contrastive_first": (_layer("l", "ContrastiveLoss", "a b s"),
                          {"a": [2, 3, 1, 1], "b": [2, 3, 1, 1], "s": [2]},
                          {"a": [2, 3, 1, 1], "b": [3, 3, 1, 1], "s": [2]}),
    "pooling_small": (_layer("p", "Pooling", "x", "pooling_param { pool: MAX kernel_size: 5 }"),
                      {"x": [1, 3, 8, 8]}, {"x": [1, 3, 3, 3]}),
    "pooling_small_ave": (_layer("p", "Pooling", "x",
                                 "pooling_param { pool: AVE kernel_size: 5 pad: 1 }"),
                          {"x": [1, 3, 8, 8]}, {"x": [1, 3, 2, 8]}),
    "contrastive_channels": (_layer("l", "ContrastiveLoss", "a b s"),
                             {"a": [2, 3, 1, 1], "b": [2, 3, 1, 1], "s": [2]},
                             {"a": [2, 3, 1, 1], "b": [2, 4, 1, 1], "s": [2]}),
}


# Shapes that look too small but that Caffe runs: (body, good shapes, the shapes fed); the
# golden keeps Caffe's input and output blobs ("runs" in checks.json).
RUNS = {
    "pooling_clipped_window": (_layer("p", "Pooling", "x",
                                      "pooling_param { pool: MAX kernel_size: 5 stride: 6 }"),
                               {"x": [1, 3, 8, 8]}, {"x": [1, 3, 8, 3]}),
}


def net_text(body: str, shapes: dict[str, list[int]]) -> str:
    """The net: one Input layer per entry of `shapes`, then `body`."""
    text = 'name: "t"\n'
    for name, shape in shapes.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        text += (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
                 f'input_param {{ shape {{ {dims} }} }} }}\n')
    return text + body + "\n"


def _abort_line(stderr: str) -> str:
    # glog's fatal lines: "F1202 01:51:51.566367 32537 eltwise_layer.cpp:34] message"
    lines = [m.group(1) for m in (re.match(r"F\d{4} \S+ +\d+ (.*)", ln)
                                  for ln in stderr.splitlines()) if m]
    if not lines:
        raise SystemExit(f"the oracle did not abort with a CHECK:\n{stderr[-2000:]}")
    return lines[0].strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="overwrite checks.json")
    args = ap.parse_args()
    why = oracle_unavailable()
    if why:
        raise SystemExit(why)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case, (body, good, bad) in CASES.items():
            net = Path(tmp) / f"{case}.prototxt"
            net.write_text(net_text(body, bad))
            run = subprocess.run([str(ORACLE), "forward", str(net), "--out",
                                  str(Path(tmp) / "out.npz")], capture_output=True,
                                 text=True, timeout=600, cwd=tmp)
            out[case] = dict(body=body, good=good, bad=bad, caffe=_abort_line(run.stderr))
            print(case, out[case]["caffe"])
        runs = {}
        for case, (body, good, fed) in RUNS.items():
            net = Path(tmp) / f"{case}.prototxt"
            net.write_text(net_text(body, fed))
            rng = np.random.default_rng(0)
            inputs = {k: rng.standard_normal(v).astype(np.float32) for k, v in fed.items()}
            np.savez(Path(tmp) / "in.npz", **inputs)
            subprocess.run([str(ORACLE), "forward", str(net), "--inputs",
                            str(Path(tmp) / "in.npz"), "--out", str(Path(tmp) / "out.npz")],
                           check=True, capture_output=True, timeout=600, cwd=tmp)
            with np.load(Path(tmp) / "out.npz") as f:
                blobs = {k[len("data/"):]: f[k].tolist() for k in f.files
                         if k.startswith("data/")}
            runs[case] = dict(body=body, good=good, blobs=blobs)
            print(case, "ran:", {k: np.shape(v) for k, v in blobs.items()})
        out["runs"] = runs
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(GOLDEN, force=args.force, text=True) as f:
        f.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
