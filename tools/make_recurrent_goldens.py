"""Goldens for the recurrent layers (LSTM, RNN, LSTMUnit) from real BVLC Caffe 1.0.

    sudo python tools/make_recurrent_goldens.py [--only SUBSTRING]

Each case is a small net (with `force_backward: true` but the last), run by ../shared/caffe-oracle
(`forward --backward --seed 1`, Caffe's own fillers, or `--randomize 7`) on seeded
inputs and seeded N(0, 1) diffs on its outputs of loss weight 0 (the hT/cT tops too).
Writes tests/golden/recurrent/<case>.npz in the layout of
tools/make_layer_backward_goldens.py: `input/`, `topdiff/`, `data/`, `diff/`,
`param/`, `pdiff/`, `meta` (the oracle's, plus prototxt, phase, case) and `caffemodel`
(the weights file Caffe wrote, as bytes).  `carry_<lstm|rnn>.npz`: real pycaffe
(tools/_chroot.py) runs four forwards in a row without expose_hidden (3, 3, 2, 3
streams), to record the hidden state RecurrentLayer::Forward_cpu carries from one into
the next, also across reshapes.  `solve_lstm_stack_net.npz`: `caffe-oracle solve`, 6 SGD
iterations of the stacked net from Caffe's filled start.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import ORACLE
from tools._chroot import chroot_workdir, run_in_chroot
from tools._oracle_goldens import generate, input_layer, write_golden

GOLDEN = ROOT / "tests" / "golden" / "recurrent"
CAFFE_ROOT = Path("/opt/caffe-ref")

T, N, H = 4, 3, 5
# sequence starts mid-batch: stream 0 restarts at t=2, stream 1 at t=1 and t=3
CONT = np.array([[0, 0, 0], [1, 0, 1], [0, 1, 1], [1, 0, 1]], np.float32)
# the first step continues (the given h0/c0 matter) for streams 0 and 2
CONT_EXPOSED = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]], np.float32)
FILLERS = ('weight_filler { type: "uniform" min: -0.4 max: 0.4 } '
           'bias_filler { type: "gaussian" std: 0.3 }')


@dataclass(frozen=True)
class Case:
    name: str
    prototxt: str
    inputs: dict[str, tuple[int, ...] | np.ndarray]  # shape: N(0, 1) data; array: as is
    randomize: bool = False
    force_backward: bool = True


def _recurrent(kind: str, *, static: bool, expose: bool, cont: np.ndarray = CONT,
               x_shape: tuple[int, ...] = (T, N, 2, 3), fillers: str = FILLERS
               ) -> tuple[str, dict]:
    """One LSTM/RNN layer fed by Input layers."""
    inputs: dict = {"x": x_shape, "cont": cont}
    bottoms = ["x", "cont"]
    if static:
        inputs["xs"] = (N, 4)
        bottoms.append("xs")
    hidden = ["h0", "c0"] if kind == "LSTM" else ["h0"]
    tops = ["h" if kind == "LSTM" else "o"]
    if expose:
        for b in hidden:
            inputs[b] = (1, N, H)
        bottoms += hidden
        tops += ["hT", "cT"][:len(hidden)]
    text = "".join(input_layer(b, *(v.shape if isinstance(v, np.ndarray) else v))
                   for b, v in inputs.items())
    text += (f'layer {{ name: "{kind.lower()}1" type: "{kind}" '
             + "".join(f'bottom: "{b}" ' for b in bottoms)
             + "".join(f'top: "{t}" ' for t in tops)
             + f"recurrent_param {{ num_output: {H} "
             + ("expose_hidden: true " if expose else "") + f"{fillers} }} }}\n")
    return text, inputs


def _cases() -> list[Case]:
    cases = []
    for kind in ("LSTM", "RNN"):
        for static in (False, True):
            for expose in (False, True):
                name = kind.lower() + ("_static" if static else "") + \
                    ("_expose" if expose else "")
                text, inputs = _recurrent(kind, static=static, expose=expose,
                                          cont=CONT_EXPOSED if expose else CONT)
                cases.append(Case(name, text, inputs))
    # cont outside {0, 1}: LSTMUnit's forget-gate diff f (1 - f) keeps cont inside f
    frac = CONT_EXPOSED * np.array([1.0, 0.5, 2.0], np.float32)
    text, inputs = _recurrent("LSTM", static=True, expose=True, cont=frac)
    cases.append(Case("lstm_cont_fractional", text, inputs))
    # the oracle's values (--randomize) instead of the fillers
    text, inputs = _recurrent("RNN", static=False, expose=True, x_shape=(T, N, 3),
                              cont=CONT_EXPOSED, fillers="")
    cases.append(Case("rnn_randomized", text, inputs, randomize=True))
    text, inputs = _recurrent("LSTM", static=False, expose=False, x_shape=(T, N, 3),
                              fillers="")
    cases.append(Case("lstm_randomized", text, inputs, randomize=True))
    # LSTMUnit alone, cont with a fraction (bottom 2 gets no diff: AllowForceBackward)
    cases.append(Case("lstm_unit", input_layer("c_prev", 1, 4, H) + input_layer("gates", 1, 4, 4 * H)
                      + input_layer("cont", 1, 4)
                      + 'layer { name: "unit" type: "LSTMUnit" bottom: "c_prev" '
                        'bottom: "gates" bottom: "cont" top: "c" top: "h" }\n',
                      {"c_prev": (1, 4, H), "gates": (1, 4, 4 * H),
                       "cont": np.array([[1, 0, 0.5, 1]], np.float32)}))
    # a small LRCN-like net: Embed -> LSTM -> LSTM (stacked) -> InnerProduct -> loss;
    # no force_backward (it would override Embed's propagate_down and abort)
    words = np.array([[3, 1, 0], [2, 2, 4], [0, 3, 1], [4, 0, 2]], np.float32)
    labels = np.array([[1, 0, 2], [2, 1, 0], [0, 2, 1], [1, 1, 2]], np.float32)
    text = (input_layer("words", T, N) + input_layer("cont", T, N)
            + input_layer("label", T, N)
            + 'layer { name: "embed" type: "Embed" bottom: "words" top: "emb" '
              'propagate_down: false embed_param { input_dim: 5 num_output: 4 bias_term: false '
              'weight_filler { type: "uniform" min: -0.5 max: 0.5 } } }\n'
            + f'layer {{ name: "lstm1" type: "LSTM" bottom: "emb" bottom: "cont" top: "lstm1" '
              f'recurrent_param {{ num_output: {H} {FILLERS} }} }}\n'
            + f'layer {{ name: "lstm2" type: "LSTM" bottom: "lstm1" bottom: "cont" top: "lstm2" '
              f'recurrent_param {{ num_output: {H} {FILLERS} }} }}\n'
            + 'layer { name: "predict" type: "InnerProduct" bottom: "lstm2" top: "predict" '
              'inner_product_param { num_output: 3 axis: 2 '
              'weight_filler { type: "xavier" } } }\n'
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "predict" bottom: "label" '
              'top: "loss" softmax_param { axis: 2 } propagate_down: true '
              'propagate_down: false }\n')
    cases.append(Case("lstm_stack_net", text, {"words": words, "cont": CONT, "label": labels},
                      force_backward=False))
    return cases


CASES = _cases()


def _seed(*parts: str) -> int:
    return int(hashlib.sha256(":".join(parts).encode()).hexdigest()[:8], 16)


def _inputs(case: Case) -> dict[str, np.ndarray]:
    r = np.random.RandomState(_seed("input", case.name))
    return {k: (v if isinstance(v, np.ndarray) else r.standard_normal(v).astype(np.float32))
            for k, v in case.inputs.items()}


def make(case: Case) -> str:
    prototxt = ("force_backward: true\n" if case.force_backward else "") + case.prototxt
    inputs = _inputs(case)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "net.prototxt").write_text(prototxt)
        np.savez(t / "in.npz", **inputs)
        # the tops: everything no layer reads (Caffe's net outputs)
        cmd = [str(ORACLE), "forward", str(t / "net.prototxt"), "--inputs", str(t / "in.npz"),
               "--out", str(t / "probe.npz"), "--phase", "train", "--seed", "1"]
        _run(cmd)
        with np.load(t / "probe.npz") as f:
            meta = json.loads(str(f["meta"]))
        r = np.random.RandomState(_seed("topdiff", case.name))
        diffs = {b: r.standard_normal(meta["blobs"][b]).astype(np.float32)
                 for b in meta["outputs"] if meta["blob_loss_weights"].get(b, 0.0) == 0.0}
        np.savez(t / "td.npz", **diffs)
        cmd[cmd.index("--out") + 1] = str(t / "out.npz")
        cmd += ["--backward", "--topdiff", str(t / "td.npz"),
                "--save-weights", str(t / "w.caffemodel")]
        if case.randomize:
            cmd += ["--randomize", "7"]
        _run(cmd)
        with np.load(t / "out.npz") as f:
            got = {k: f[k] for k in f.files}
        caffemodel = np.frombuffer((t / "w.caffemodel").read_bytes(), np.uint8)
    meta = json.loads(str(got.pop("meta")))
    meta.update(case=case.name, prototxt=prototxt, phase="train")
    record = {f"input/{k}": v for k, v in inputs.items()}
    record.update({f"topdiff/{k}": v for k, v in diffs.items()})
    record.update({k: v.astype(np.float32) for k, v in got.items()
                   if not (k.startswith("data/") and f"input/{k[5:]}" in record)})
    record["caffemodel"] = caffemodel
    record["meta"] = np.array(json.dumps(meta))
    return write_golden(GOLDEN, case.name, record)


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe-oracle failed:\n{proc.stderr[-2000:]}")


# Two forwards in a row under real pycaffe: without expose_hidden the second starts from
# the h_T/c_T the first ended with (streams whose cont_1 is 1 see it).
_CARRY_SCRIPT = """
import sys
import numpy as np
import caffe
work = sys.argv[1]
caffe.set_random_seed(1)
net = caffe.Net(work + "/net.prototxt", caffe.TRAIN)
out = {}
for k, v in np.load(work + "/in.npz").items():
    out["input/" + k] = v
for step in range(int(sys.argv[4])):
    for k in ("x", "cont"):
        value = out["input/%s@%d" % (k, step)]
        if net.blobs[k].data.shape != value.shape:
            net.blobs[k].reshape(*value.shape)
    net.reshape()
    for k in ("x", "cont"):
        net.blobs[k].data[...] = out["input/%s@%d" % (k, step)]
    net.forward()
    out["data/%s@%d" % (sys.argv[2], step)] = net.blobs[sys.argv[2]].data.copy()
for i, b in enumerate(net.params[sys.argv[3]]):
    out["param/%s/%d" % (sys.argv[3], i)] = b.data.copy()
np.savez(work + "/out.npz", **out)
"""


@dataclass(frozen=True)
class CarryCase:
    name: str
    kind: str


def make_carry(case: CarryCase) -> str:
    text, _ = _recurrent(case.kind, static=False, expose=False)
    top = "h" if case.kind == "LSTM" else "o"
    layer = f"{case.kind.lower()}1"
    r = np.random.RandomState(_seed("carry", case.name))
    second = CONT.copy()
    second[0] = [1, 0, 1]  # streams 0 and 2 continue from the first call's last step
    # then 2 streams (Caffe's h_T blob keeps its first 2 * H values), then 3 again (the
    # blob's capacity still holds stream 2 of the second call)
    conts = [CONT, second, second[:, :2], second]
    inputs = {}
    for k, cont in enumerate(conts):
        inputs[f"x@{k}"] = r.standard_normal((T, cont.shape[1], 2, 3)).astype(np.float32)
        inputs[f"cont@{k}"] = np.ascontiguousarray(cont)
    with chroot_workdir(CAFFE_ROOT, "recurrent-") as (here, inside):
        (here / "net.prototxt").write_text(text)
        np.savez(here / "in.npz", **inputs)
        (here / "carry.py").write_text(_CARRY_SCRIPT)
        run_in_chroot(CAFFE_ROOT, f"{inside}/carry.py", [inside, top, layer, str(len(conts))])
        with np.load(here / "out.npz") as f:
            record = {k: f[k] for k in f.files}
    record["meta"] = np.array(json.dumps({"case": case.name, "prototxt": text,
                                          "phase": "train", "top": top, "layer": layer,
                                          "steps": len(conts)}))
    return write_golden(GOLDEN, case.name, record)


SOLVER = """net: "net.prototxt"
base_lr: 0.5
momentum: 0.9
weight_decay: 0.001
lr_policy: "fixed"
max_iter: 6
display: 0
snapshot_after_train: false
random_seed: 1
"""


@dataclass(frozen=True)
class SolveCase:
    name: str
    net: str  # the Case whose net and inputs it trains


def make_solve(case: SolveCase) -> str:
    """6 SGD iterations (momentum, weight decay) with `caffe-oracle solve`: the loss of
    each, the start (`init`, Caffe's fillers) and the final params."""
    net = next(c for c in CASES if c.name == case.net)
    inputs = _inputs(net)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "net.prototxt").write_text(net.prototxt)
        (t / "solver.prototxt").write_text(SOLVER)
        np.savez(t / "in.npz", **inputs)
        _run([str(ORACLE), "solve", str(t / "solver.prototxt"), "--iters", "6",
              "--inputs", str(t / "in.npz"), "--out", str(t / "out.npz"), "--seed", "1",
              "--save-init", str(t / "w0.caffemodel")], cwd=t)  # net: relative to it
        with np.load(t / "out.npz") as f:
            got = {k: f[k] for k in f.files if k != "meta"}
        record = {f"input/{k}": v for k, v in inputs.items()}
        record.update(got)
        record["init"] = np.frombuffer((t / "w0.caffemodel").read_bytes(), np.uint8)
    record["meta"] = np.array(json.dumps({"case": case.name, "prototxt": net.prototxt,
                                          "solver": SOLVER, "iters": 6}))
    return write_golden(GOLDEN, case.name, record)


def main() -> None:
    carry = [CarryCase("carry_lstm", "LSTM"), CarryCase("carry_rnn", "RNN")]
    solve = [SolveCase("solve_lstm_stack_net", "lstm_stack_net")]

    def make_any(c: Case | CarryCase | SolveCase) -> str:
        if isinstance(c, CarryCase):
            return make_carry(c)
        return make_solve(c) if isinstance(c, SolveCase) else make(c)
    generate(CASES + carry + solve, make_any)


if __name__ == "__main__":
    main()
