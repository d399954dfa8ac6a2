"""Compiles a published net (or builds it in caffe_fx.pycaffe) and compares every blob,
and after backward every diff, with what real Caffe computed."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import fx

import caffe_fx
from caffe_fx.frontend.read import read_net
from caffe_fx.lowering.builder import SOURCE_TYPES
from caffe_fx.lowering.registry import lookup
from tests.golden.harness import relative_error

# Whole nets accumulate float32 rounding over many layers (and Caffe's OpenBLAS sums in
# another order), so they get 1e-4 relative to each blob's largest magnitude.
TOLERANCE = 1e-4


def compile_net(prototxt: str | Path, weights: str | Path | None, *,
                outputs: Sequence[str] | None = None,
                input_shapes: Mapping[str, Sequence[int]] | None = None) -> fx.GraphModule:
    """caffe_fx.compile; every net in the catalogue must compile (no skipping)."""
    return caffe_fx.compile(str(prototxt), None if weights is None else str(weights),
                            outputs=outputs, input_shapes=input_shapes)


def check_supported(prototxt: str | Path) -> None:
    """Fails fast, naming them, when the net has layer types caffe_fx lacks, before the
    oracle's expensive run."""
    net = read_net(str(prototxt))
    kinds = sorted({layer.type for layer in net.layer
                    if layer.type not in SOURCE_TYPES and lookup(layer.type) is None})
    if kinds:
        pytest.fail(f"caffe_fx does not support layer types: {', '.join(kinds)}")


def run(gm: fx.GraphModule, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Positional, in Caffe's order: a blob named `input` is the argument `input_`.
    with torch.no_grad():
        out = gm(*(torch.from_numpy(np.ascontiguousarray(inputs[k]))
                   for k in gm.meta["caffe"].inputs))
    return {k: v.detach().numpy() for k, v in out.items()}


def assert_blobs_match(ours: Mapping[str, np.ndarray], caffe: Mapping[str, np.ndarray],
                       what: str, tol: float = TOLERANCE, fraction: float = 0.0) -> None:
    """Every Caffe blob is in `ours`, of the same shape, within `tol`; lists all misfits.
    With `fraction`, up to that share of a blob's elements may differ by more than `tol`
    (relative to its largest magnitude): for outputs a moved pooling mask reaches (their
    layers are matched one by one, at `tol`, too)."""
    bad = []
    for blob, expected in caffe.items():
        got = ours[blob]
        if got.shape != expected.shape:
            bad.append(f"blob '{blob}': shape {got.shape}, Caffe's {expected.shape}")
            continue
        err = relative_error(got, expected)
        if err <= tol:
            continue
        if fraction > 0:
            scale = float(np.abs(expected).max()) or 1.0
            off = float(np.mean(np.abs(got - expected) > tol * scale))
            if off <= fraction:
                continue
            bad.append(f"blob '{blob}': {off:.3%} of its elements differ from Caffe's by "
                       f"more than {tol} (relative; at most {err:.3g})")
        else:
            bad.append(f"blob '{blob}': differs from Caffe by {err:.3g} (relative)")
    assert not bad, f"{what}: " + "; ".join(bad)


def backward_text(text: str) -> str:
    """The net as the backward checks run it: with `force_backward: true` (diffs reach the
    inputs and every layer) unless it has a loss to start from; nets with a loss often
    hold Accuracy or ArgMax too, whose Backward Caffe does not implement."""
    net = read_net(text)
    has_loss = any(layer.loss_weight or getattr(lookup(layer.type), "is_loss", False)
                   for layer in net.layer)
    return text if has_loss or net.force_backward else "force_backward: true\n" + text


def facade_net(prototxt: Path, inputs: Mapping[str, np.ndarray],
               weights: Path | None = None) -> Any:
    """The net in caffe_fx.pycaffe, its input blobs reshaped to the inputs' shapes."""
    import caffe_fx.pycaffe as caffe

    net = caffe.Net(str(prototxt), caffe.TEST, weights=None if weights is None else str(weights))
    for name, value in inputs.items():
        net.blobs[name].reshape(*value.shape)
    net.reshape()
    return net


def output_topdiffs(net: Any, seed: str) -> dict[str, np.ndarray]:
    """Seeded N(0, 1) top diffs for the outputs that are not losses (a loss top's diff is
    its loss weight, which Caffe sets itself)."""
    r = np.random.RandomState(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    weights = net.blob_loss_weights
    return {b: np.asarray(r.randn(*net.blobs[b].shape), np.float32)
            for b in net.outputs if weights[b] == 0}


def assert_facade_matches(net: Any, inputs: Mapping[str, np.ndarray],
                          topdiffs: Mapping[str, np.ndarray], caffe: Mapping[str, np.ndarray],
                          meta: Mapping[str, Any], what: str, tol: float = TOLERANCE) -> None:
    """pycaffe's forward, then backward from `topdiffs`, in caffe_fx.pycaffe: every blob's
    data, then every blob's diff and every param's data and diff, against Caffe's record
    (run_oracle with backward=True).

    Backward is checked on Caffe's forward values: a value that Caffe and caffe_fx round a
    1e-7 apart may sit on the other side of a ReLU's zero or win a MAX pooling window by
    that much, which moves that element's gradient, and the move spreads to every layer
    below.  So after the plain forward, each layer runs again (forward(start=L, end=L))
    on the bottoms Caffe recorded, and the blobs hold Caffe's data when backward runs.
    (The per-layer backward that follows reads what each layer saw in that re-run.)"""
    net.forward(**inputs)
    assert list(net.blobs) == list(meta["blobs"]), f"{what}: blob names differ from Caffe's"
    assert_blobs_match({f"data/{b}": blob.data for b, blob in net.blobs.items()},
                       {f"data/{b}": caffe[f"data/{b}"] for b in net.blobs}, what, tol)
    for layer in net._layer_names:
        bottoms, tops = net.bottom_names[layer], net.top_names[layer]
        if not bottoms:
            continue
        # An in-place layer reads what the one before wrote, except an in-place ReLU: it
        # runs on Caffe's own output (the same signs, whatever the slope), so that its
        # backward, which reads that output, routes as Caffe's does.
        if not set(bottoms) & set(tops) or net.layer_dict[layer].type == "ReLU":
            for b in bottoms:
                net.blobs[b].data[...] = caffe[f"data/{b}"]
        net.forward(start=layer, end=layer)
    for name, blob in net.blobs.items():
        blob.data[...] = caffe[f"data/{name}"]
    for name, diff in topdiffs.items():
        net.blobs[name].diff[...] = diff
    net.backward()
    ours: dict[str, np.ndarray] = {}
    for name, blob in net.blobs.items():
        ours[f"diff/{name}"] = blob.diff
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            ours[f"param/{layer}/{i}"], ours[f"pdiff/{layer}/{i}"] = blob.data, blob.diff
    theirs = {k: v for k, v in caffe.items() if not k.startswith("data/")}
    assert set(ours) == set(theirs), f"{what}: recorded arrays differ: " \
        f"{sorted(set(ours) ^ set(theirs))[:10]}"
    assert_blobs_match(ours, theirs, what, tol)


class _OnCaffesValues(fx.Interpreter):
    """Runs a compiled net so that every blob's final value equals Caffe's recorded one
    while autograd still flows through our ops: `caffe + (ours - ours.detach())`.  Each
    layer's backward then reads Caffe's forward values, as assert_facade_matches does."""

    def __init__(self, gm: fx.GraphModule, caffe: Mapping[str, np.ndarray],
                 inplace_relus: Mapping[str, str]) -> None:
        super().__init__(gm)
        self.caffe = caffe
        self.inplace_relus = inplace_relus  # layer -> its blob
        self.blob_of: dict[str, str] = {}  # node name -> the blob whose final value it is
        output = next(n for n in gm.graph.nodes if n.op == "output")
        for blob, node in output.args[0].items():
            if node.op == "call_method" and node.target == "contiguous":
                node = node.args[0]  # NHWC inside: the layer's own node
            self.blob_of[node.name] = blob

    def _on_caffes(self, out: torch.Tensor, blob: str) -> torch.Tensor:
        value = torch.from_numpy(self.caffe[f"data/{blob}"]).to(out.dtype)
        return value + (out - out.detach()) if out.requires_grad else value

    def run_node(self, n: fx.Node) -> Any:
        blob = self.inplace_relus.get(n.meta.get("caffe_layer", ""))
        if blob is not None and f"data/{blob}" in self.caffe:
            # An in-place ReLU runs on Caffe's own output (the same signs, whatever the
            # slope), so that its backward, which reads that output, routes as Caffe's.
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            args = (self._on_caffes(args[0], blob), *args[1:])
            out = getattr(self, n.op)(n.target, args, kwargs)
        else:
            out = super().run_node(n)
        blob = self.blob_of.get(n.name)
        key = f"data/{blob}"
        if blob is not None and isinstance(out, torch.Tensor) and key in self.caffe \
                and n.op != "placeholder" and tuple(out.shape) == self.caffe[key].shape:
            out = self._on_caffes(out, blob)
        return out


class _Recording(_OnCaffesValues):
    """_OnCaffesValues that keeps what each layer computed before Caffe's value replaced
    it: every blob as our layer computes it from Caffe's own bottoms."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.raw: dict[str, np.ndarray] = {}

    def _on_caffes(self, out: torch.Tensor, blob: str) -> torch.Tensor:
        self.raw[blob] = out.detach().numpy().copy()
        return super()._on_caffes(out, blob)


def assert_layers_match(gm: fx.GraphModule, inputs: Mapping[str, np.ndarray],
                        caffe: Mapping[str, np.ndarray], what: str,
                        tol: float = TOLERANCE) -> None:
    """Every blob of `caffe` ({blob: array}) as each layer computes it from the bottoms
    Caffe computed: a value that Caffe and caffe_fx round 1e-7 apart may win a MAX pooling
    window (and move its mask index, and what Upsample scatters there) by that much, which a
    whole forward then carries on; layer by layer, each layer is checked on its own."""
    record = {f"data/{b}": v for b, v in caffe.items()}
    placeholders = [n.meta["caffe_blob"] for n in gm.graph.nodes if n.op == "placeholder"]
    interp = _Recording(gm, record, {})
    with torch.no_grad():
        interp.run(*(torch.from_numpy(np.ascontiguousarray(inputs[b])) for b in placeholders))
    # A Split's tops (and an in-place layer's blob) are one node: each alias gets its value.
    output = next(n for n in gm.graph.nodes if n.op == "output")
    aliases: dict[str, list[str]] = {}
    for blob, node in output.args[0].items():
        if node.op == "call_method" and node.target == "contiguous":
            node = node.args[0]
        aliases.setdefault(node.name, []).append(blob)
    for group in aliases.values():
        got = next((interp.raw[b] for b in group if b in interp.raw), None)
        if got is not None:
            for b in group:
                interp.raw.setdefault(b, got)
    missing = sorted(set(caffe) - set(interp.raw))
    assert not missing, f"{what}: blobs not computed layer by layer: {missing[:10]}"
    assert_blobs_match(interp.raw, caffe, what, tol)


def assert_graph_matches(prototxt: Path, weights: Path, inputs: Mapping[str, np.ndarray],
                         topdiffs: Mapping[str, np.ndarray], caffe: Mapping[str, np.ndarray],
                         meta: Mapping[str, Any], what: str, tol: float = TOLERANCE) -> None:
    """Plain torch.autograd on compile()'s GraphModule: seeded with Caffe's loss weights
    and `topdiffs`, every input's grad, every param's .grad and the diff of every blob no
    layer writes in place equal Caffe's (run_oracle with backward=True), on Caffe's
    forward values (see _OnCaffesValues)."""
    net = read_net(str(prototxt))
    blobs = [b for b in meta["blobs"] if f"data/{b}" in caffe]
    # One node per layer (fuse=False): Caffe's values are put in layer by layer.
    gm = caffe_fx.compile(str(prototxt), str(weights), outputs=blobs, fuse=False,
                          input_shapes={k: v.shape for k, v in inputs.items()})
    inplace = {layer.top[j] for layer in net.layer for j in range(len(layer.top))
               if j < len(layer.bottom) and layer.bottom[j] == layer.top[j]}
    feeds = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    placeholders = [n.meta["caffe_blob"] for n in gm.graph.nodes if n.op == "placeholder"]
    relus = {layer.name: layer.top[0] for layer in net.layer
             if layer.type == "ReLU" and list(layer.bottom) == list(layer.top)}
    outs = _OnCaffesValues(gm, caffe, relus).run(*(feeds[b] for b in placeholders))
    roots, seeds = [], []
    for b in blobs:
        weight = float(meta["blob_loss_weights"].get(b, 0.0))
        seed = topdiffs.get(b)
        if seed is None and weight:
            seed = np.full(outs[b].shape, weight, np.float32)
        if seed is not None and outs[b].requires_grad:
            roots.append(outs[b])
            seeds.append(torch.from_numpy(np.asarray(seed, np.float32)).reshape(outs[b].shape))
    # A Split's tops are its bottom's tensor in the graph (one gradient, their sum): the
    # bottom's diff is checked, the per-branch diffs only in the facade.
    shared: set[str] = set()
    seen: dict[int, str] = {}
    for b in blobs:
        if id(outs[b]) in seen:
            shared.add(b)
        seen.setdefault(id(outs[b]), b)
    checked = [b for b in blobs if b not in inplace and b not in inputs and b not in shared
               and f"diff/{b}" in caffe and outs[b].requires_grad
               and not any(b == layer.bottom[0] for layer in net.layer
                           if layer.type in ("Accuracy", "ArgMax", "Silence"))]
    params = {f"{layer}/{i}": getattr(gm.get_submodule(sub), name)
              for layer, sub in gm.meta["caffe"].modules.items()
              for i, name in enumerate(gm.get_submodule(sub).caffe_blobs)}
    params = {k: p for k, p in params.items() if isinstance(p, torch.nn.Parameter)}
    torch.autograd.backward(roots, seeds, inputs=list(feeds.values()) + list(params.values())
                            + [outs[b] for b in checked])
    ours: dict[str, np.ndarray] = {}
    theirs: dict[str, np.ndarray] = {}
    for b, t in feeds.items():
        if f"diff/{b}" in caffe and caffe[f"diff/{b}"].any():
            ours[f"diff/{b}"] = t.grad.numpy()
            theirs[f"diff/{b}"] = caffe[f"diff/{b}"]
    for b in checked:
        grad = outs[b].grad
        ours[f"diff/{b}"] = np.zeros(outs[b].shape, np.float32) if grad is None \
            else grad.reshape(outs[b].shape).numpy()
        theirs[f"diff/{b}"] = caffe[f"diff/{b}"].reshape(outs[b].shape)
    for k, p in params.items():
        if f"pdiff/{k}" in caffe:
            ours[f"pdiff/{k}"] = np.zeros(p.shape, np.float32) if p.grad is None \
                else p.grad.numpy()
            theirs[f"pdiff/{k}"] = caffe[f"pdiff/{k}"].reshape(p.shape)
    assert len(ours) > 0, f"{what}: nothing to compare"
    assert_blobs_match(ours, theirs, what, tol)
