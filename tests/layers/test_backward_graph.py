"""Caffe's backward through plain torch.autograd on compile()'s GraphModule.

Goldens: tools/make_layer_backward_goldens.py ran every golden layer case with
`force_backward: true` and seeded top diffs, tools/make_backward_goldens.py ran small
nets (in-place chains, Eltwise MAX ties, loss weights, frozen params), both through BVLC
Caffe 1.0's Net::Backward (src/caffe/net.cpp BackwardFromTo, each Backward_cpu).  The
GraphModule gets Caffe's params and inputs, autograd is seeded with the loss weights and
top diffs, and every input's .grad, every param's .grad and every intermediate blob's
gradient must equal Caffe's diff (1e-5 of its largest magnitude).

What Net::Init decides rather than a layer is set up here as a PyTorch user would: the
inputs require grad only under force_backward (otherwise Caffe computes no input diff),
and compile() freezes a param with `lr_mult: 0`, which Caffe gives no diff.
Cases Caffe cannot differentiate (Accuracy, ArgMax, Threshold, random blobs, ...) have
no golden: the generators skip them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from torch import fx

import caffe_fx
from caffe_fx.proto import caffe_pb2
from tests.golden.harness import relative_error

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
TOL = 1e-5


def _cases() -> list:
    return [pytest.param(p, id=f"{folder}:{p.stem}")
            for folder, kind in (("layer", "layer_backward"), ("net", "backward"))
            for p in sorted((GOLDEN / kind).glob("*.npz"))]


CASES = _cases()


def check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    got = got.reshape(want.shape) if got.size == want.size else got
    assert got.shape == want.shape, f"{what}: shape {got.shape}, Caffe's {want.shape}"
    err = relative_error(got, want)
    assert err <= TOL, f"{what}: relative error {err:.3g} > {TOL}"


class Golden:
    """One golden: Caffe's net, params, inputs, seeds and every diff it computed."""

    def __init__(self, path: Path) -> None:
        with np.load(path) as z:
            self.g = {k: z[k] for k in z.files}
        self.meta = json.loads(str(self.g.pop("meta")))
        self.net = text_format.Parse(self.meta["prototxt"], caffe_pb2.NetParameter())
        self.params = {layer["name"]: [self.g[f"param/{layer['name']}/{i}"]
                                       for i in range(layer["nparams"])]
                       for layer in self.meta["layers"] if layer["nparams"]}
        # A blob written in place holds its last version in the GraphModule, but its diff
        # in Caffe is that of its first (the producer's top).  Reshape and Flatten tops
        # share their bottom's diff (Blob::ShareDiff), so where such a group holds an
        # in-place blob, its tops show the diff the in-place layer wrote into the group.
        layers = self.meta["layers"]
        self.in_place = {t for layer in layers
                         for b, t in zip(layer["bottoms"], layer["tops"]) if b == t}
        group = {b: b for layer in layers for b in layer["bottoms"] + layer["tops"]}

        def root(b: str) -> str:
            while group[b] != b:
                b = group[b]
            return b
        sharing = [layer for layer in layers if layer["type"] in ("Reshape", "Flatten")]
        for layer in sharing:
            group[root(layer["tops"][0])] = root(layer["bottoms"][0])
        touched = {root(b) for b in self.in_place}
        self.shared_diff = {t for layer in sharing for t in layer["tops"]
                            if root(t) in touched}

    def compile(self) -> fx.GraphModule:
        known = caffe_fx.compile(self.meta["prototxt"], phase=self.meta["phase"])
        blobs = [b for b in self.meta["blobs"] if b in known.meta["caffe"].blob_shapes]
        gm = caffe_fx.compile(self.meta["prototxt"], weights=self.params,
                              phase=self.meta["phase"], outputs=blobs)
        for layer in self.net.layer:  # compile() froze what Caffe gives no diff
            for i, tensor in enumerate(self.param_tensors(gm, layer.name)):
                frozen = i < len(layer.param) and layer.param[i].lr_mult == 0 \
                    and not self.net.force_backward
                if isinstance(tensor, torch.nn.Parameter):  # not BatchNorm's statistics
                    assert tensor.requires_grad != frozen, f"{layer.name}/{i}"
        return gm

    def param_tensors(self, gm: fx.GraphModule, layer: str) -> list[torch.Tensor]:
        if layer not in self.params:
            return []
        module = gm.get_submodule(gm.meta["caffe"].modules[layer])
        return [getattr(module, name) for name in module.caffe_blobs]

    def inputs(self) -> dict[str, torch.Tensor]:
        return {k[len("input/"):]: torch.tensor(v, requires_grad=self.net.force_backward)
                for k, v in self.g.items() if k.startswith("input/")}

    def seeds(self, outs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The outputs backward starts from and their diffs: a top diff given to Caffe,
        else the loss weight (Layer::SetLossWeights puts it in the loss top's diff)."""
        diffs = {}
        for b, t in outs.items():
            weight = self.meta["blob_loss_weights"].get(b, 0.0)
            if f"topdiff/{b}" in self.g:
                diffs[b] = torch.tensor(self.g[f"topdiff/{b}"]).reshape(t.shape)
            elif weight:
                diffs[b] = torch.full(t.shape, weight)
        return diffs


def backward_from(outs: dict[str, torch.Tensor], seeds: dict[str, torch.Tensor]
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The seeded outputs that autograd can start from, with their diffs."""
    pairs = [(outs[b], d) for b, d in seeds.items() if outs[b].requires_grad]
    return [t for t, _ in pairs], [d for _, d in pairs]


@pytest.mark.parametrize("path", CASES)
def test_autograd_gives_caffes_diffs(path: Path) -> None:
    golden = Golden(path)
    gm = golden.compile()
    check_input_and_param_diffs(golden, gm, gm)


# Nets of Caffe-formula layers without in-place chains (which torch.compile does not
# follow; README, deliberate differences).
COMPILED = ["conv_relu_pool_softmax", "eltwise_max_ties", "batchnorm_scale",
            "split_two_losses"]


@pytest.mark.parametrize("case", COMPILED)
def test_compiled_training_step_gives_caffes_diffs(case: str) -> None:
    golden = Golden(GOLDEN / "backward" / f"{case}.npz")
    gm = golden.compile()
    check_input_and_param_diffs(golden, gm, torch.compile(gm, backend="aot_eager",
                                                          fullgraph=True))


def check_input_and_param_diffs(golden: Golden, gm: fx.GraphModule, run) -> None:
    """Caffe's input and param diffs from autograd seeded as Caffe's backward is, through
    `run` (gm itself or a compiled form of it)."""
    inputs = golden.inputs()
    outs = run(**inputs)
    tensors, diffs = backward_from(outs, golden.seeds(outs))
    if tensors:  # else every output is a constant (DummyData, Power with scale 0, ...)
        torch.autograd.backward(tensors, diffs)
    g = golden.g
    for name, x in inputs.items():
        want = g[f"diff/{name}"]
        if not x.requires_grad:  # no force_backward: Caffe left the input's diff at 0
            assert not want.any(), f"Caffe computed a diff for input {name}"
            continue
        check(x.grad.numpy() if x.grad is not None else np.zeros_like(want), want,
              f"diff of input {name}")
    for layer in golden.params:
        for i, p in enumerate(golden.param_tensors(gm, layer)):
            want = g[f"pdiff/{layer}/{i}"]
            got = p.grad.numpy() if p.grad is not None else np.zeros_like(want)
            check(got, want, f"param diff {layer}/{i}")


@pytest.mark.parametrize("path", CASES)
def test_autograd_gives_caffes_blob_diffs(path: Path) -> None:
    """Every other blob's diff: the gradient at its value inside the graph (before the
    contiguous copy the GraphModule returns), plus its own seed where it does not
    require grad (a constant output, MAX pooling's mask top), except blobs written in
    place, the aliases of another blob (Split tops, TEST Dropout), whose Caffe diffs are
    partial, and Reshape/Flatten tops sharing a diff with an in-place blob."""
    golden = Golden(path)
    gm = golden.compile()
    run = fx.Interpreter(gm, garbage_collect_values=False)
    inputs = golden.inputs()
    outs = run.run(*(inputs[n.target] for n in gm.graph.nodes if n.op == "placeholder"))
    seeds = golden.seeds(outs)
    tensors, diffs = backward_from(outs, seeds)
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    seen: set[fx.Node] = set()
    wanted: dict[str, torch.Tensor] = {}
    for blob, node in out_node.args[0].items():
        if node.op == "call_method" and node.target == "contiguous":
            node = node.args[0]
        if node in seen or node.op == "placeholder" or blob in golden.in_place \
                or blob in golden.shared_diff:
            seen.add(node)
            continue
        seen.add(node)
        wanted[blob] = run.env[node]
    differentiable = {b: t for b, t in wanted.items() if t.requires_grad}
    grads = dict(zip(differentiable, torch.autograd.grad(
        tensors, list(differentiable.values()), diffs, allow_unused=True))) \
        if differentiable and tensors else {}
    for blob in wanted:
        want = golden.g[f"diff/{blob}"]
        g = grads.get(blob)
        if g is None:  # no path to a seed: Caffe's diff is the seed it was given, or 0
            g = seeds.get(blob, torch.zeros(want.shape))
        check(g.detach().numpy(), want, f"diff of blob {blob}")


def test_goldens_are_present() -> None:
    assert len(CASES) >= 250


# Nets whose layers' Caffe backward is their forward's derivative, so that torch.func,
# which runs the plain forward ops (README, deliberate differences), gives Caffe's diffs.
FUNCTIONAL = ["conv_relu_pool_softmax", "batchnorm_scale", "split_two_losses"]


@pytest.mark.parametrize("case", FUNCTIONAL)
def test_torch_func_grad_gives_caffes_param_diffs(case: str) -> None:
    """torch.func.grad over functional_call: the param diffs of Caffe's seeded backward;
    torch.func.vmap over two batches: Caffe's blobs for each."""
    golden = Golden(GOLDEN / "backward" / f"{case}.npz")
    gm = golden.compile()
    inputs = {k: v.detach() for k, v in golden.inputs().items()}
    params = {n: p.detach() for n, p in gm.named_parameters() if p.requires_grad}

    def seeded(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        outs = torch.func.functional_call(gm, ps, (), inputs)
        return sum((outs[b] * d).sum() for b, d in golden.seeds(outs).items())

    grads = torch.func.grad(seeded)(params)
    names = {id(p): n for n, p in gm.named_parameters()}
    checked = 0
    for layer in golden.params:
        for i, p in enumerate(golden.param_tensors(gm, layer)):
            if names.get(id(p)) in grads:
                check(grads[names[id(p)]].numpy(), golden.g[f"pdiff/{layer}/{i}"],
                      f"torch.func.grad: param diff {layer}/{i}")
                checked += 1
    assert checked == len(params)

    def forward(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return torch.func.functional_call(gm, params, (), x)

    twice = {k: torch.stack([v, v]) for k, v in inputs.items()}
    with torch.no_grad():
        outs = torch.func.vmap(forward)(twice)
    blobs = [b for b in outs if f"data/{b}" in golden.g and b not in golden.in_place]
    assert blobs
    for b in blobs:
        for k in range(2):
            check(outs[b][k].numpy(), golden.g[f"data/{b}"], f"torch.func.vmap: blob {b}")
