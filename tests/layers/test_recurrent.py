"""LSTM, RNN and LSTMUnit against real Caffe: forward, backward, weights, carried state.

Goldens: tools/make_recurrent_goldens.py ran each net through BVLC Caffe 1.0 (`forward
--backward` with seeded top diffs, Caffe's fillers or the oracle's random values) and
kept every blob's data and diff, every param and its diff and the caffemodel Caffe wrote;
`carry_*` ran two forwards in a row under real pycaffe.  Expose_hidden, a static input,
sequence starts mid-batch, a fractional cont, LSTMUnit alone and a stacked net.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx.errors import NetDefinitionError, ShapeError, UnsupportedFieldError
from tests.golden.harness import relative_error
from tests.pycaffe.golden_nets import net_from_golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "recurrent"
CASES = sorted(p.stem for p in GOLDEN.glob("*.npz")
               if not p.stem.startswith(("carry_", "solve_")))
TOL = 1e-5


def load(case: str) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(GOLDEN / f"{case}.npz") as z:
        g = {k: z[k] for k in z.files}
    return json.loads(str(g.pop("meta"))), g


def check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, Caffe's {want.shape}"
    err = relative_error(got, want)
    assert err <= TOL, f"{what}: relative error {err:.3g} > {TOL}"


def compile_golden(meta: dict, g: dict[str, np.ndarray], tmp_path: Path, **kw):
    """The case's net with the weights Caffe wrote (its own .caffemodel) and every blob out."""
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(g["caffemodel"].tobytes())
    return caffe_fx.compile(meta["prototxt"], weights=weights, phase=meta["phase"],
                            outputs=list(meta["blobs"]), **kw)


def run(meta: dict, g: dict[str, np.ndarray], gm) -> tuple[dict, dict]:
    force = meta["prototxt"].startswith("force_backward: true")
    inputs = {k[6:]: torch.tensor(v, requires_grad=force and k != "input/cont")
              for k, v in g.items() if k.startswith("input/")}
    return inputs, gm(**inputs)


@pytest.mark.parametrize("case", CASES)
def test_matches_caffe(case: str, tmp_path: Path) -> None:
    meta, g = load(case)
    gm = compile_golden(meta, g, tmp_path)
    for layer in meta["layers"]:  # Caffe's own caffemodel loads, blob for blob
        if layer["nparams"]:
            module = gm.get_submodule(gm.meta["caffe"].modules[layer["name"]])
            for i, name in enumerate(module.caffe_blobs):
                assert np.array_equal(getattr(module, name).detach().numpy(),
                                      g[f"param/{layer['name']}/{i}"]), f"{layer['name']}/{i}"
    inputs, out = run(meta, g, gm)
    for blob in meta["blobs"]:
        if blob not in inputs:
            check(out[blob].detach().numpy(), g[f"data/{blob}"], f"data of {blob}")
    seeds = {b: torch.tensor(g[f"topdiff/{b}"]) for b in meta["outputs"] if f"topdiff/{b}" in g}
    seeds.update({b: torch.tensor(w) for b, w in meta["blob_loss_weights"].items() if w})
    roots = [b for b in seeds if out[b].requires_grad]  # hT/cT: Caffe ignores their diffs
    inner = [b for b in meta["blobs"] if b not in inputs and b not in seeds
             and out[b].requires_grad]
    params = [(layer["name"], i, p) for layer in meta["layers"] if layer["nparams"]
              for i, p in enumerate(gm.get_submodule(gm.meta["caffe"].modules[layer["name"]])
                                    .blob_tensors())]
    leaves = [x for x in inputs.values() if x.requires_grad]
    grads = torch.autograd.grad([out[b] for b in roots], [out[b] for b in inner] + leaves
                                + [p for _, _, p in params], [seeds[b] for b in roots],
                                allow_unused=True)
    got = dict(zip(inner, grads))
    got.update(zip([n for n, x in inputs.items() if x.requires_grad], grads[len(inner):]))
    for blob in inner + list(inputs):
        want = g[f"diff/{blob}"]
        d = got.get(blob)
        check(np.zeros_like(want) if d is None else d.numpy(), want, f"diff of {blob}")
    for (layer, i, _), d in zip(params, grads[len(inner) + len(leaves):]):
        want = g[f"pdiff/{layer}/{i}"]
        check(np.zeros_like(want) if d is None else d.numpy(), want, f"param diff {layer}/{i}")


def test_caffe_gives_hidden_inputs_and_cont_no_diff() -> None:
    # what the GraphModule reproduces above: h0, c0 and cont get zero diffs in Caffe
    _, g = load("lstm_static_expose")
    for blob in ("h0", "c0", "cont"):
        assert not g[f"diff/{blob}"].any()
    assert g["diff/x"].any() and g["diff/xs"].any()


@pytest.mark.parametrize("case", ["carry_lstm", "carry_rnn"])
def test_state_carries_into_the_next_forward(case: str) -> None:
    """Four calls of 3, 3, 2 and 3 streams, each starting from the last one's h_T (c_T)
    as Caffe's blob holds it: the first N streams, the capacity keeping the rest."""
    meta, g = load(case)
    layer, top = meta["layer"], meta["top"]
    weights = {layer: [g[k] for k in sorted(k for k in g if k.startswith(f"param/{layer}/"))]}
    gm = caffe_fx.compile(meta["prototxt"], weights=weights)
    steps = [{k: torch.tensor(g[f"input/{k}@{s}"]) for k in ("x", "cont")}
             for s in range(meta["steps"])]
    with torch.no_grad():
        for s, inputs in enumerate(steps):
            check(gm(**inputs)[top].numpy(), g[f"data/{top}@{s}"], f"forward {s}")
        gm.get_submodule(layer).reset_state()  # back to Caffe's first forward
        check(gm(**steps[0])[top].numpy(), g[f"data/{top}@0"], "after reset_state()")
        # the carried state matters here: a fresh start differs on the continued streams
        fresh = caffe_fx.compile(meta["prototxt"], weights=weights)
        assert relative_error(fresh(**steps[1])[top].numpy(), g[f"data/{top}@1"]) > 1e-3


@pytest.mark.parametrize("case", ["carry_lstm", "carry_rnn"])
def test_pycaffe_facade_carries_state_across_reshapes(case: str, tmp_path: Path) -> None:
    meta, g = load(case)
    proto = tmp_path / "net.prototxt"
    proto.write_text(meta["prototxt"])
    net = caffe.Net(str(proto), caffe.TRAIN)
    for i, blob in enumerate(net.params[meta["layer"]]):
        blob.data[...] = g[f"param/{meta['layer']}/{i}"]
    for s in range(meta["steps"]):
        for k in ("x", "cont"):
            net.blobs[k].reshape(*g[f"input/{k}@{s}"].shape)
        net.reshape()
        for k in ("x", "cont"):
            net.blobs[k].data[...] = g[f"input/{k}@{s}"]
        net.forward()
        check(net.blobs[meta["top"]].data, g[f"data/{meta['top']}@{s}"], f"forward {s}")


@pytest.mark.parametrize("case", ["lstm_static_expose", "rnn", "lstm_stack_net"])
def test_pycaffe_facade_matches_caffe(case: str, tmp_path: Path) -> None:
    net, meta, g = net_from_golden(GOLDEN / f"{case}.npz", tmp_path)
    net.backward()
    for name in meta["blobs"]:
        want = g[f"data/{name}"] if f"data/{name}" in g else g[f"input/{name}"]
        check(net.blobs[name].data, want, f"data of {name}")
        check(net.blobs[name].diff, g[f"diff/{name}"], f"diff of {name}")
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            check(blob.data, g[f"param/{layer}/{i}"], f"param {layer}/{i}")
            check(blob.diff, g[f"pdiff/{layer}/{i}"], f"param diff {layer}/{i}")


def test_graph_reads_in_caffes_words(tmp_path: Path) -> None:
    meta, g = load("lstm_stack_net")
    gm = compile_golden(meta, g, tmp_path)
    assert "lstm1 = self.lstm1(emb, cont)" in gm.code
    assert [k for k in gm.state_dict() if k.startswith("lstm1.")] == \
        ["lstm1.W_xc", "lstm1.b_c", "lstm1.W_hc"]
    meta, g = load("rnn_static_expose")
    gm = compile_golden(meta, g, tmp_path)
    assert list(gm.get_submodule("rnn1").caffe_blobs) == \
        ["W_xh", "b_h", "W_xh_static", "W_hh", "W_ho", "b_o"]
    node = next(n for n in gm.graph.nodes if n.op == "call_module")
    assert node.meta["caffe_layer"] == "rnn1"
    meta, g = load("lstm_unit")
    gm = compile_golden(meta, g, tmp_path)
    assert "caffe_fx_ops_recurrent_lstm_unit(c_prev, gates, cont)" in gm.code


@pytest.mark.parametrize("case", ["lstm_static_expose", "lstm", "rnn_static", "lstm_unit"])
def test_script_and_export_give_the_same_values(case: str, tmp_path: Path) -> None:
    meta, g = load(case)
    inputs = {k[6:]: torch.tensor(v) for k, v in g.items() if k.startswith("input/")}
    outs = list(meta["outputs"])
    want = {b: g[f"data/{b}"] for b in outs}
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(g["caffemodel"].tobytes())
    gm = caffe_fx.compile(meta["prototxt"], weights=weights)
    scripted = torch.jit.script(gm)
    got = scripted(**inputs)
    for b in outs:
        check(got[b].detach().numpy(), want[b], f"scripted {b}")
    gm2 = caffe_fx.compile(meta["prototxt"], weights=weights)
    program = torch.export.export(gm2, (), inputs)  # fixed T: the loop unrolls
    got = program.module()(**inputs)
    for b in outs:
        check(got[b].detach().numpy(), want[b], f"exported {b}")


@pytest.mark.parametrize("case", ["lstm_cont_fractional", "rnn"])
def test_torch_compile_gives_caffes_diffs(case: str, tmp_path: Path) -> None:
    meta, g = load(case)
    gm = compile_golden(meta, g, tmp_path)
    inputs = {k[6:]: torch.tensor(v, requires_grad=k != "input/cont")
              for k, v in g.items() if k.startswith("input/")}
    top = meta["layers"][-1]["tops"][0]
    out = torch.compile(gm, backend="aot_eager", fullgraph=True)(**inputs)
    check(out[top].detach().numpy(), g[f"data/{top}"], f"data of {top}")
    out[top].backward(torch.tensor(g[f"topdiff/{top}"]))
    layer = meta["layers"][-1]["name"]
    for i, p in enumerate(gm.get_submodule(layer).blob_tensors()):
        check(p.grad.numpy(), g[f"pdiff/{layer}/{i}"], f"param diff {layer}/{i}")
    check(inputs["x"].grad.numpy(), g["diff/x"], "diff of x")


NET = """
layer {{ name: "x" type: "Input" top: "x" input_param {{ shape {{ {x} }} }} }}
layer {{ name: "cont" type: "Input" top: "cont" input_param {{ shape {{ {cont} }} }} }}
layer {{ name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" {more} top: "h"
        recurrent_param {{ num_output: {h} {param} }} }}
"""


def _net(x="dim: 3 dim: 2 dim: 4", cont="dim: 3 dim: 2", more="", h=5, param="") -> str:
    return NET.format(x=x, cont=cont, more=more, h=h, param=param)


@pytest.mark.parametrize("net, error, match", [
    (_net(h=0), UnsupportedFieldError, r"layer 'lstm' \(LSTM\): recurrent_param.num_output = 0"),
    (_net(cont="dim: 3 dim: 3"), ShapeError, r"bottom\[1\] \(cont\) has shape \[3, 3\]"),
    (_net(x="dim: 3 dim: 2"), ShapeError, r"bottom\[0\] \(x\) has shape \[3, 2\].*3 axes"),
    (_net(param="expose_hidden: true"), NetDefinitionError,
     r"2 bottoms; allowed: 4 or 5 \(x, cont, \[x_static\], h0, c0\)"),
], ids=["num_output", "cont_shape", "x_axes", "expose_bottoms"])
def test_bad_nets_name_layer_field_and_value(net: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        caffe_fx.compile(net)


LIVE = """force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 5 dim: 2 dim: 3 } } }
layer { name: "cont" type: "Input" top: "cont" input_param { shape { dim: 5 dim: 2 } } }
layer { name: "xs" type: "Input" top: "xs" input_param { shape { dim: 2 dim: 2 dim: 2 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" bottom: "xs" top: "h"
        recurrent_param { num_output: 4 } }
layer { name: "rnn" type: "RNN" bottom: "h" bottom: "cont" top: "o"
        recurrent_param { num_output: 3 } }
"""


@pytest.mark.oracle
def test_live_oracle_stacked_lstm_rnn(oracle, tmp_path: Path) -> None:
    """T = 5, a 3-D static input, LSTM into RNN, the oracle's random weights."""
    r = np.random.RandomState(3)
    inputs = {"x": r.randn(5, 2, 3).astype(np.float32), "xs": r.randn(2, 2, 2).astype(np.float32),
              "cont": np.array([[0, 0], [1, 1], [0, 1], [1, 0], [1, 1]], np.float32)}
    diffs = {"o": r.randn(5, 2, 3).astype(np.float32)}
    proto = tmp_path / "net.prototxt"
    proto.write_text(LIVE)
    got, _ = oracle(proto, inputs, randomize=5, save_weights=tmp_path / "w.caffemodel",
                    backward=True, topdiffs=diffs, workdir=tmp_path)
    gm = caffe_fx.compile(LIVE, weights=tmp_path / "w.caffemodel", outputs=["h", "o"])
    x = {k: torch.tensor(v, requires_grad=k != "cont") for k, v in inputs.items()}
    out = gm(**x)
    check(out["h"].detach().numpy(), got["data/h"], "data of h")
    check(out["o"].detach().numpy(), got["data/o"], "data of o")
    out["o"].backward(torch.tensor(diffs["o"]))
    for k in ("x", "xs"):
        check(x[k].grad.numpy(), got[f"diff/{k}"], f"diff of {k}")
    for layer in ("lstm", "rnn"):
        for i, p in enumerate(gm.get_submodule(layer).blob_tensors()):
            check(p.grad.numpy(), got[f"pdiff/{layer}/{i}"], f"param diff {layer}/{i}")


def test_caffe_fx_solver_trains_as_caffe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """6 SGD iterations (momentum, weight decay) of the stacked LSTM net through
    caffe_fx.Solver from Caffe's own start: each loss and the final params (1e-4)."""
    meta, g = load("solve_lstm_stack_net")
    monkeypatch.chdir(tmp_path)  # the solver's `net:` is relative, as in Caffe
    Path("net.prototxt").write_text(meta["prototxt"])
    Path("solver.prototxt").write_text(meta["solver"])
    Path("w0.caffemodel").write_bytes(g["init"].tobytes())
    feed = {k[6:]: v for k, v in g.items() if k.startswith("input/")}
    solver = caffe_fx.Solver("solver.prototxt", weights="w0.caffemodel", inputs=lambda it: feed)
    losses = []
    for _ in range(meta["iters"]):
        solver.step(1)
        losses.append(solver.smoothed_loss)  # average_loss 1: this iteration's loss
    assert relative_error(np.array(losses), g["loss"]) <= 1e-4, (losses, g["loss"])
    for key in (k for k in g if k.startswith("param/")):
        _, layer, i = key.split("/")
        module = solver.net.get_submodule(solver.net.meta["caffe"].modules[layer])
        got = module.blob_tensors()[int(i)].detach().numpy()
        assert relative_error(got, g[key]) <= 1e-4, key
