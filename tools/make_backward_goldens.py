"""Runs small nets forward and backward through real Caffe and keeps every diff.

    python tools/make_backward_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle (`forward --randomize 7 --backward [--topdiff]`,
i.e. pycaffe's Net.backward over src/caffe/net.cpp's BackwardFromTo).  Writes
tests/golden/backward/<case>.npz: `input/<blob>`, `topdiff/<blob>`, `param/<layer>/<i>`,
`data/<blob>`, `diff/<blob>`, `pdiff/<layer>/<i>` and `meta` (JSON: the prototxt, phase,
the oracle's meta).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import ORACLE
from tools._oracle_goldens import generate, input_layer, normal, write_golden

GOLDEN = ROOT / "tests" / "golden" / "backward"


def _ip(name: str, bottom: str, n: int, extra: str = "") -> str:
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'{extra} inner_product_param {{ num_output: {n} }} }}\n')


def _euclid(name: str, bottom: str, target: str, extra: str = "") -> str:
    return (f'layer {{ name: "{name}" type: "EuclideanLoss" bottom: "{bottom}" '
            f'bottom: "{target}" top: "{name}" {extra} }}\n')


def _relu_ips(n: int) -> str:
    """n InnerProducts of `data`, each into a ReLU r0..r{n-1} (not in place, so that the
    ReLU's backward leaves the diffs of r0.. as Eltwise routed them)."""
    return "".join(
        _ip(f"ip{i}", "data", 3) +
        f'layer {{ name: "relu{i}" type: "ReLU" bottom: "ip{i}" top: "r{i}" }}\n'
        for i in range(n))


@dataclass(frozen=True)
class Case:
    name: str
    prototxt: str
    inputs: dict[str, Callable[[np.random.RandomState], np.ndarray]]
    topdiffs: dict[str, Callable[[np.random.RandomState], np.ndarray]] = field(
        default_factory=dict)
    phase: str = "test"


CASES = [
    Case("conv_relu_pool_softmax",
         input_layer("data", 2, 3, 8, 8) + input_layer("label", 2) +
         'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
         'convolution_param { num_output: 4 kernel_size: 3 } }\n'
         'layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }\n'
         'layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" '
         'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
         + _ip("ip1", "pool1", 5) +
         'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" '
         'top: "loss" }\n',
         {"data": normal(2, 3, 8, 8),
          "label": lambda r: r.randint(0, 5, size=(2,)).astype(np.float32)}),
    Case("euclidean_weight2",
         input_layer("data", 3, 4) + input_layer("target", 3, 3) + _ip("ip1", "data", 3)
         + _euclid("loss", "ip1", "target", "loss_weight: 2"),
         {"data": normal(3, 4), "target": normal(3, 3)}),
    Case("split_two_losses",
         input_layer("data", 3, 4) + input_layer("t1", 3, 2) + input_layer("t2", 3, 3)
         + _ip("ip1", "data", 5) + _ip("ipa", "ip1", 2) + _ip("ipb", "ip1", 3)
         + _euclid("loss_a", "ipa", "t1") + _euclid("loss_b", "ipb", "t2", "loss_weight: 0.5"),
         {"data": normal(3, 4), "t1": normal(3, 2), "t2": normal(3, 3)}),
    Case("batchnorm_scale",
         input_layer("data", 2, 3, 5, 5) + input_layer("target", 2, 4) +
         'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
         'convolution_param { num_output: 3 kernel_size: 3 } }\n'
         'layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" '
         'batch_norm_param { use_global_stats: true } }\n'
         'layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" '
         'scale_param { bias_term: true } }\n'
         + _ip("ip1", "conv1", 4) + _euclid("loss", "ip1", "target"),
         {"data": normal(2, 3, 5, 5), "target": normal(2, 4)}),
    Case("eltwise_sum_coeff",
         input_layer("data", 3, 4) + input_layer("target", 3, 3) + _ip("ipa", "data", 3)
         + _ip("ipb", "data", 3) +
         'layer { name: "sum" type: "Eltwise" bottom: "ipa" bottom: "ipb" top: "sum" '
         'eltwise_param { operation: SUM coeff: 1.5 coeff: -0.5 } }\n'
         + _euclid("loss", "sum", "target"),
         {"data": normal(3, 4), "target": normal(3, 3)}),
    Case("concat_slice",
         input_layer("data", 2, 3, 6, 6) + input_layer("target", 2, 4) +
         'layer { name: "ca" type: "Convolution" bottom: "data" top: "ca" '
         'convolution_param { num_output: 2 kernel_size: 3 } }\n'
         'layer { name: "cb" type: "Convolution" bottom: "data" top: "cb" '
         'convolution_param { num_output: 3 kernel_size: 3 } }\n'
         'layer { name: "cat" type: "Concat" bottom: "ca" bottom: "cb" top: "cat" }\n'
         'layer { name: "slice" type: "Slice" bottom: "cat" top: "s1" top: "s2" '
         'slice_param { axis: 1 slice_point: 1 } }\n'
         + _ip("ip1", "s2", 4) + _euclid("loss", "ip1", "target"),
         {"data": normal(2, 3, 6, 6), "target": normal(2, 4)}),
    Case("force_backward_inputs",
         "force_backward: true\n" + input_layer("data", 3, 4) + input_layer("target", 3, 3)
         + _ip("ip1", "data", 3) +
         'layer { name: "sig" type: "Sigmoid" bottom: "ip1" top: "ip1" }\n'
         + _euclid("loss", "ip1", "target"),
         {"data": normal(3, 4), "target": normal(3, 3)}),
    Case("propagate_down_false",
         input_layer("data", 3, 4) + input_layer("target", 3, 2) + _ip("ip1", "data", 3)
         + _ip("ip2", "ip1", 2, "propagate_down: false") + _euclid("loss", "ip2", "target"),
         {"data": normal(3, 4), "target": normal(3, 2)}),
    Case("dangling_and_frozen",
         input_layer("data", 3, 4) + input_layer("target", 3, 2)
         + _ip("ip0", "data", 4, "param { lr_mult: 0 } param { lr_mult: 0 }")
         + _ip("ip1", "ip0", 2) + _ip("side", "ip0", 3) + _euclid("loss", "ip1", "target"),
         {"data": normal(3, 4), "target": normal(3, 2)}),
    Case("topdiff_inplace_chain",
         "force_backward: true\n" + input_layer("data", 2, 6) + _ip("ip1", "data", 5) +
         'layer { name: "tanh" type: "TanH" bottom: "ip1" top: "ip1" }\n'
         'layer { name: "bnll" type: "BNLL" bottom: "ip1" top: "ip1" }\n'
         + _ip("ip2", "ip1", 4) +
         'layer { name: "relu" type: "ReLU" bottom: "ip2" top: "ip2" '
         'relu_param { negative_slope: 0.1 } }\n',
         {"data": normal(2, 6)}, topdiffs={"ip2": normal(2, 4)}),
    # eltwise_layer.cpp's mask: a tie between bottoms 0 and 1 goes to bottom 1, a tie with
    # a later bottom stays with the earlier one (ReLU outputs tie at 0 often)
    Case("eltwise_max_ties",
         input_layer("data", 4, 3) + input_layer("target", 4, 3) + _relu_ips(2) +
         'layer { name: "max" type: "Eltwise" bottom: "r0" bottom: "r1" top: "max" '
         'eltwise_param { operation: MAX } }\n' + _euclid("loss", "max", "target"),
         {"data": normal(4, 3), "target": normal(4, 3)}),
    Case("eltwise_max3_ties",
         input_layer("data", 4, 3) + input_layer("target", 4, 3) + _relu_ips(3) +
         'layer { name: "max" type: "Eltwise" bottom: "r0" bottom: "r1" bottom: "r2" '
         'top: "max" eltwise_param { operation: MAX } }\n' + _euclid("loss", "max", "target"),
         {"data": normal(4, 3), "target": normal(4, 3)}),
    # in place, Power and Log overwrite the top diff they then multiply by (power_layer.cpp,
    # log_layer.cpp); all three read the data as the in-place layer left it
    Case("power_inplace",
         input_layer("data", 3, 4) + input_layer("target", 3, 5) + _ip("ip1", "data", 5) +
         'layer { name: "sig" type: "Sigmoid" bottom: "ip1" top: "sig" }\n'
         'layer { name: "pow_sq" type: "Power" bottom: "sig" top: "sig" '
         'power_param { power: 2 scale: 0.5 shift: 1 } }\n'
         'layer { name: "pow_gen" type: "Power" bottom: "sig" top: "sig" '
         'power_param { power: 1.5 scale: 0.7 shift: 0.2 } }\n'
         'layer { name: "pow_lin" type: "Power" bottom: "sig" top: "sig" '
         'power_param { power: 1 scale: -2 shift: 0.3 } }\n'
         + _euclid("loss", "sig", "target"),
         {"data": normal(3, 4), "target": normal(3, 5)}),
    Case("power_inplace_noshift",
         "force_backward: true\n" + input_layer("data", 3, 4) + _ip("ip1", "data", 5) +
         'layer { name: "pow" type: "Power" bottom: "ip1" top: "ip1" '
         'power_param { power: 3 scale: 0.5 } }\n',
         {"data": normal(3, 4)}, topdiffs={"ip1": normal(3, 5)}),
    Case("exp_log_inplace",
         input_layer("data", 3, 4) + input_layer("target", 3, 5) + _ip("ip1", "data", 5) +
         'layer { name: "exp" type: "Exp" bottom: "ip1" top: "ip1" '
         'exp_param { base: 2 scale: 0.5 shift: 0.1 } }\n'
         'layer { name: "log" type: "Log" bottom: "ip1" top: "ip1" '
         'log_param { scale: 0.5 shift: 1 } }\n'
         + _ip("ip2", "ip1", 5) +
         'layer { name: "exp2" type: "Exp" bottom: "ip2" top: "ip2" }\n'
         + _euclid("loss", "ip2", "target"),
         {"data": normal(3, 4), "target": normal(3, 5)}),
    # A loss layer without a top: Net::AppendTop gives it the blob "(automatic)", loss
    # weight 1, and backward starts from it.
    Case("automatic_loss_top",
         input_layer("data", 3, 4) + input_layer("label", 3) + input_layer("target", 3, 5)
         + _ip("ip1", "data", 5) +
         'layer { name: "loss1" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" }\n'
         + _euclid("loss2", "ip1", "target", "loss_weight: 0.5"),
         {"data": normal(3, 4),
          "label": lambda r: r.randint(0, 5, size=(3,)).astype(np.float32),
          "target": normal(3, 5)}),
    # Reshape and Flatten share their bottom's data and diff (Blob::ShareData/ShareDiff):
    # an in-place layer after them shows through the bottom blob too
    Case("reshape_inplace",
         input_layer("data", 2, 12) + input_layer("target", 2, 6) + _ip("ip1", "data", 6) +
         'layer { name: "reshape" type: "Reshape" bottom: "ip1" top: "r" '
         'reshape_param { shape { dim: 0 dim: 2 dim: 3 } } }\n'
         'layer { name: "relu" type: "ReLU" bottom: "r" top: "r" }\n'
         'layer { name: "reshape2" type: "Reshape" bottom: "r" top: "f" '
         'reshape_param { shape { dim: 0 dim: 6 } } }\n'
         + _euclid("loss", "f", "target"),
         {"data": normal(2, 12), "target": normal(2, 6)}),
    Case("flatten_inplace",
         input_layer("data", 2, 12) + input_layer("target", 2, 6) + _ip("ip1", "data", 6) +
         'layer { name: "flat" type: "Flatten" bottom: "ip1" top: "f" }\n'
         'layer { name: "scale" type: "Power" bottom: "f" top: "f" power_param { scale: 2 } }\n'
         + _euclid("loss", "f", "target"),
         {"data": normal(2, 12), "target": normal(2, 6)}),
    # Chains of in-place layers: each Backward_cpu reads the blob as the last in-place
    # layer left it (Sigmoid's and TanH's top_data, ELU's and Swish's too), and Power,
    # Log and in-place LRN lose the top diff they overwrite
    Case("neuron_inplace_chain",
         "force_backward: true\n" + input_layer("data", 2, 3, 4, 5) +
         'layer { name: "sig" type: "Sigmoid" bottom: "data" top: "s" }\n'
         'layer { name: "tanh" type: "TanH" bottom: "s" top: "s" }\n'
         'layer { name: "elu" type: "ELU" bottom: "s" top: "s" elu_param { alpha: -0.5 } }\n'
         'layer { name: "swish" type: "Swish" bottom: "s" top: "s" '
         'swish_param { beta: 2 } }\n'
         'layer { name: "pow" type: "Power" bottom: "s" top: "s" '
         'power_param { power: 2 shift: -0.6 } }\n',
         {"data": normal(2, 3, 4, 5)}, topdiffs={"s": normal(2, 3, 4, 5)}),
    Case("bnll_inplace_chain",
         "force_backward: true\n" + input_layer("data", 2, 3, 4, 5) +
         'layer { name: "bnll" type: "BNLL" bottom: "data" top: "b" }\n'
         'layer { name: "log" type: "Log" bottom: "b" top: "b" log_param { shift: 0.1 } }\n'
         'layer { name: "clip" type: "Clip" bottom: "b" top: "b" '
         'clip_param { min: -0.2 max: 0.6 } }\n'
         'layer { name: "relu" type: "ReLU" bottom: "b" top: "b" '
         'relu_param { negative_slope: -0.3 } }\n'
         'layer { name: "pow" type: "Power" bottom: "b" top: "b" '
         'power_param { power: 1.5 scale: 0.5 shift: 1 } }\n',
         {"data": normal(2, 3, 4, 5)}, topdiffs={"b": normal(2, 3, 4, 5)}),
    Case("lrn_mvn_inplace_chain",
         "force_backward: true\n" + input_layer("data", 2, 3, 4, 5) +
         'layer { name: "exp" type: "Exp" bottom: "data" top: "e" exp_param { scale: 0.3 } }\n'
         'layer { name: "lrn" type: "LRN" bottom: "e" top: "e" '
         'lrn_param { local_size: 3 alpha: 0.5 } }\n'
         'layer { name: "lrn2" type: "LRN" bottom: "e" top: "e" '
         'lrn_param { local_size: 3 alpha: 0.5 norm_region: WITHIN_CHANNEL } }\n'
         'layer { name: "mvn" type: "MVN" bottom: "e" top: "e" }\n',
         {"data": normal(2, 3, 4, 5)}, topdiffs={"e": normal(2, 3, 4, 5)}),
    # in place, MVN's first caffe_mul overwrites the top diff it reads again, and its
    # caffe_cpu_axpby has X = Y (OpenBLAS scales Y by beta before adding alpha X)
    Case("mvn_inplace",
         "force_backward: true\n" + input_layer("data", 2, 3, 4, 5) +
         'layer { name: "mvn" type: "MVN" bottom: "data" top: "data" }\n',
         {"data": normal(2, 3, 4, 5)}, topdiffs={"data": normal(2, 3, 4, 5)}),
    Case("mvn_across_inplace",
         "force_backward: true\n" + input_layer("data", 2, 3, 4, 5) +
         'layer { name: "mvn" type: "MVN" bottom: "data" top: "data" '
         'mvn_param { across_channels: true eps: 0.1 } }\n',
         {"data": normal(2, 3, 4, 5)}, topdiffs={"data": normal(2, 3, 4, 5)}),
    # Filter's top holds only the selected items: its shape is known after forward
    Case("filter_selected",
         input_layer("data", 4, 3) + input_layer("sel", 4) + _ip("ip1", "data", 5) +
         'layer { name: "filter" type: "Filter" bottom: "ip1" bottom: "sel" top: "picked" }\n'
         'layer { name: "sum" type: "Reduction" bottom: "picked" top: "loss" '
         'loss_weight: 1 reduction_param { operation: SUMSQ } }\n',
         {"data": normal(4, 3),
          "sel": lambda r: np.array([1, 0, 1, 1], np.float32)}),
]


def _oracle(proto: Path, inputs: Path, topdiff: Path | None, out: Path, phase: str) -> None:
    cmd = [str(ORACLE), "forward", str(proto), "--phase", phase, "--randomize", "7",
           "--inputs", str(inputs), "--backward", "--out", str(out)]
    if topdiff is not None:
        cmd += ["--topdiff", str(topdiff)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe-oracle failed on {proto}:\n{proc.stderr[-3000:]}")


def make_golden(case: Case) -> str:
    r = np.random.RandomState(1)
    inputs = {k: f(r) for k, f in case.inputs.items()}
    topdiffs = {k: f(r) for k, f in case.topdiffs.items()}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        proto = t / "net.prototxt"
        proto.write_text(f'name: "{case.name}"\n' + case.prototxt)
        np.savez(t / "in.npz", **inputs)
        td = None
        if topdiffs:
            td = t / "td.npz"
            np.savez(td, **topdiffs)
        _oracle(proto, t / "in.npz", td, t / "out.npz", case.phase)
        with np.load(t / "out.npz") as f:
            got = {k: f[k] for k in f.files}
    meta = json.loads(str(got.pop("meta")))
    meta.update(case=case.name, prototxt=f'name: "{case.name}"\n' + case.prototxt,
                phase=case.phase)
    record = {f"input/{k}": v for k, v in inputs.items()}
    record.update({f"topdiff/{k}": v for k, v in topdiffs.items()})
    record.update({k: v.astype(np.float32) for k, v in got.items()})
    record["meta"] = np.array(json.dumps(meta))
    return write_golden(GOLDEN, case.name, record)


def main() -> None:
    generate(CASES, make_golden)


if __name__ == "__main__":
    main()
