"""Runs small nets holding Python layers (tests/pycaffe/pylayers/) through real pycaffe.

    python tools/make_pylayer_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle (`forward --randomize 7 --backward` with
CAFFE_ORACLE_PYTHONPATH at the layer modules, i.e. include/caffe/layers/python_layer.hpp
under BVLC Caffe 1.0).  Writes tests/golden/pylayer/<case>.npz: `input/<blob>`,
`param/<layer>/<i>`, `data/<blob>`, `diff/<blob>`, `pdiff/<layer>/<i>` and `meta` (JSON:
the prototxt, phase, the oracle's meta).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import ORACLE
from tools._oracle_goldens import generate, input_layer, normal, write_golden

GOLDEN = ROOT / "tests" / "golden" / "pylayer"
PYLAYERS = ROOT / "tests" / "pycaffe" / "pylayers"


def _python(name: str, bottoms: list[str], tops: list[str], module: str, layer: str,
            param_str: str = "", extra: str = "") -> str:
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    ps = f" param_str: '{param_str}'" if param_str else ""
    return (f'layer {{ name: "{name}" type: "Python" {b} {t} {extra} '
            f'python_param {{ module: "{module}" layer: "{layer}"{ps} }} }}\n')


@dataclass(frozen=True)
class Case:
    name: str
    prototxt: str
    inputs: dict[str, Callable[[np.random.RandomState], np.ndarray]]
    phase: str = "test"


CASES = [
    Case("scale_then_pyloss",
         input_layer("data", 3, 4) + input_layer("target", 3, 3) +
         'layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" '
         'inner_product_param { num_output: 3 } }\n'
         + _python("scale", ["ip1"], ["scaled"], "pyscale", "ScaleLayer", "2.5")
         + _python("loss", ["scaled", "target"], ["loss"], "pyloss", "EuclideanLossLayer",
                   extra="loss_weight: 2"),
         {"data": normal(3, 4), "target": normal(3, 3)}),
    Case("affine_two_tops_train",
         "force_backward: true\n" + input_layer("data", 2, 3, 4) + input_layer("t1", 2, 2)
         + input_layer("t2", 2, 1)
         + _python("affine", ["data"], ["affine"], "pyscale", "AffineLayer",
                   '{"offset": 0.25}')
         + _python("sqmean", ["affine"], ["sq", "mean"], "pyscale", "SquareAndMeanLayer") +
         'layer { name: "ip" type: "InnerProduct" bottom: "sq" top: "ip" '
         'inner_product_param { num_output: 2 } }\n'
         'layer { name: "loss_a" type: "EuclideanLoss" bottom: "ip" bottom: "t1" '
         'top: "loss_a" }\n'
         'layer { name: "loss_b" type: "EuclideanLoss" bottom: "mean" bottom: "t2" '
         'top: "loss_b" loss_weight: 0.5 }\n',
         {"data": normal(2, 3, 4), "t1": normal(2, 2), "t2": normal(2, 1)},
         phase="train"),
]


def make_golden(case: Case) -> str:
    r = np.random.RandomState(1)
    inputs = {k: f(r) for k, f in case.inputs.items()}
    prototxt = f'name: "{case.name}"\n' + case.prototxt
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "net.prototxt").write_text(prototxt)
        np.savez(t / "in.npz", **inputs)
        cmd = [str(ORACLE), "forward", str(t / "net.prototxt"), "--phase", case.phase,
               "--randomize", "7", "--inputs", str(t / "in.npz"), "--backward",
               "--out", str(t / "out.npz")]
        env = dict(os.environ, CAFFE_ORACLE_PYTHONPATH=str(PYLAYERS))
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"caffe-oracle failed:\n{proc.stderr[-3000:]}")
        with np.load(t / "out.npz") as f:
            got = {k: f[k] for k in f.files}
    meta = json.loads(str(got.pop("meta")))
    meta.update(case=case.name, prototxt=prototxt, phase=case.phase)
    record = {f"input/{k}": v for k, v in inputs.items()}
    record.update({k: v.astype(np.float32) for k, v in got.items()})
    record["meta"] = np.array(json.dumps(meta))
    return write_golden(GOLDEN, case.name, record)


def main() -> None:
    generate(CASES, make_golden)


if __name__ == "__main__":
    main()
