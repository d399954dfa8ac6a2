"""Net.backward for the pycaffe facade: Caffe's per-layer backward over a taped forward.

pycaffe facade.  Mirrors src/caffe/net.cpp (Init's "need backward" analysis, force_backward,
propagate_down, BackwardFromTo) and Layer::SetLossWeights (include/caffe/layer.hpp).  The
forward records each layer's bottoms as autograd leaves, so a layer's backward is one
vector-Jacobian product with its top diffs, run layer by layer from the top as Caffe does.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from ..lowering.registry import lookup
from ..proto import caffe_pb2

# Caffe's Backward of these elementwise layers reads the blobs' data as they are at
# backward time, which a later in-place layer may have overwritten (CAFFE_REFERENCE §1.8:
# an in-place BNLL differentiates at its own output, a TanH followed by an in-place layer
# at that layer's output); their gradient is taken from the current data too.
READS_BOTTOM = frozenset({"AbsVal", "BNLL", "Log", "Clip"})
READS_DATA = frozenset({"ReLU", "Sigmoid", "TanH", "ELU"}) | READS_BOTTOM


def neuron_backward(layer: caffe_pb2.LayerParameter, bottom: torch.Tensor, top: torch.Tensor,
                    top_diff: torch.Tensor) -> torch.Tensor:
    """The bottom diff of an elementwise layer from the current bottom and top data, with
    Caffe's formulas (src/caffe/layers/{relu,sigmoid,tanh,elu}_layer.cpp)."""
    if layer.type == "ReLU":
        ns = layer.relu_param.negative_slope
        return top_diff * torch.where(bottom > 0, 1.0, ns)
    if layer.type == "Sigmoid":
        return top_diff * top * (1 - top)
    if layer.type == "TanH":
        return top_diff * (1 - top * top)
    if layer.type == "ELU":
        return torch.where(bottom > 0, top_diff, top_diff * (top + layer.elu_param.alpha))
    raise KeyError(layer.type)


@dataclass(frozen=True)
class Plan:
    """Net::Init's backward flags, per layer in net order."""

    layer_need_backward: tuple[bool, ...]
    bottom_need_backward: tuple[tuple[bool, ...], ...]
    param_propagate_down: tuple[tuple[bool, ...], ...]

    @property
    def any(self) -> bool:
        return any(self.layer_need_backward)


@dataclass
class LayerTape:
    """One layer's taped forward: its bottoms as leaves, its outputs, what ran."""

    leaves: list[torch.Tensor]
    outputs: list[torch.Tensor]
    module: torch.nn.Module | None
    node: fx.Node


def top_loss_weights(layer: caffe_pb2.LayerParameter) -> list[float]:
    """Layer::SetLossWeights: explicit loss_weight per top, else 1 on top 0 of loss layers."""
    if layer.loss_weight:
        return [float(layer.loss_weight[j]) if j < len(layer.loss_weight) else 0.0
                for j in range(len(layer.top))]
    spec = lookup(layer.type)
    return [1.0 if spec is not None and spec.is_loss and j == 0 else 0.0
            for j in range(len(layer.top))]


def _allow_force_backward(layer: caffe_pb2.LayerParameter, bottom: int) -> bool:
    # LossLayer: never into the labels (EuclideanLoss allows both); ContrastiveLoss: nor
    # its `sim`; recurrent layers: nor `cont`.
    spec = lookup(layer.type)
    if layer.type == "EuclideanLoss":
        return True
    if layer.type == "ContrastiveLoss":
        return bottom != 2
    if layer.type in ("RNN", "LSTM"):
        return bottom != 1
    return not (spec is not None and spec.is_loss and bottom == 1)


def plan_backward(net: caffe_pb2.NetParameter, param_counts: Mapping[str, int]) -> Plan:
    """Net::Init's forward sweep (bottoms needing backward, lr_mult != 0), its reverse
    sweep (no loss downstream, all tops skipping backprop) and force_backward."""
    layers = list(net.layer)
    blob_need: dict[str, bool] = {}
    need: list[bool] = []
    bottom_need: list[list[bool]] = []
    param_down: list[list[bool]] = []
    for layer in layers:
        needs = False
        flags = []
        for j, b in enumerate(layer.bottom):
            nb = blob_need.get(b, False)
            needs |= nb  # Caffe ORs the blob's flag, before propagate_down overrides it
            if layer.propagate_down:
                nb = bool(layer.propagate_down[j])
            flags.append(nb)
        for j, t in enumerate(layer.top):
            if not (j < len(layer.bottom) and layer.bottom[j] == t):
                blob_need[t] = False
        params = []
        for k in range(param_counts.get(layer.name, 0)):
            lr = layer.param[k].lr_mult if k < len(layer.param) else 1.0
            params.append(lr != 0)
            needs |= lr != 0
        if needs:
            for t in layer.top:
                blob_need[t] = True
        need.append(needs)
        bottom_need.append(flags)
        param_down.append(params)

    under_loss: set[str] = set()
    skip: set[str] = set()
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        weights = top_loss_weights(layer)
        contributes = any(w != 0 or t in under_loss for w, t in zip(weights, layer.top))
        skip_down = all(t in skip for t in layer.top)
        if need[i] and skip_down:
            need[i] = False
            bottom_need[i] = [False] * len(layer.bottom)
        if not contributes:
            need[i] = False
        for j, b in enumerate(layer.bottom):
            if contributes:
                under_loss.add(b)
            else:
                bottom_need[i][j] = False
            if not bottom_need[i][j]:
                skip.add(b)
    if net.force_backward:
        for i, layer in enumerate(layers):
            need[i] = True
            bottom_need[i] = [f or _allow_force_backward(layer, j)
                              for j, f in enumerate(bottom_need[i])]
            param_down[i] = [True] * len(param_down[i])
    return Plan(tuple(need), tuple(tuple(f) for f in bottom_need),
                tuple(tuple(p) for p in param_down))


def run_layer(node: fx.Node, module: torch.nn.Module | None, args: tuple, kwargs: dict,
              tape: dict[str, LayerTape]) -> Any:
    """Runs one layer's node on fresh leaves cut from its bottoms and tapes it."""
    leaves: list[torch.Tensor] = []

    def leaf(t: Any) -> Any:
        if isinstance(t, torch.Tensor):
            t = t.detach().requires_grad_(t.is_floating_point())
            leaves.append(t)
        return t

    args = fx.node.map_aggregate(args, leaf)  # type: ignore[assignment]
    with torch.enable_grad():
        if module is not None:
            result = module(*args, **kwargs)
        else:
            # torch.relu_ would overwrite a leaf that autograd needs
            fn = torch.relu if node.target is torch.relu_ else node.target
            result = fn(*args, **kwargs)  # type: ignore[operator]
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    tape[node.meta["caffe_layer"]] = LayerTape(leaves, outs, module, node)
    return result


class TapeInterpreter(fx.Interpreter):
    """Runs a compiled net like its own forward, taping every layer for backward."""

    def __init__(self, gm: fx.GraphModule, tape: dict[str, LayerTape]) -> None:
        super().__init__(gm)
        self.tape = tape

    def run_node(self, n: fx.Node) -> Any:
        if "caffe_layer" not in n.meta or n.op not in ("call_module", "call_function"):
            return super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        module = self.fetch_attr(n.target) if n.op == "call_module" else None  # type: ignore[arg-type]
        return run_layer(n, module, args, kwargs, self.tape)


def layer_vjp(layer: caffe_pb2.LayerParameter, record: LayerTape, top_diffs: list[torch.Tensor],
              bottom_need: tuple[bool, ...], param_down: tuple[bool, ...],
              current_top: torch.Tensor | None) -> tuple[list[torch.Tensor | None],
                                                         list[torch.Tensor | None]]:
    """One Layer::Backward: gradients for the bottoms and params it propagates to (None
    where it does not, or where the layer has no gradient there)."""
    leaves, outputs = record.leaves, record.outputs
    if current_top is not None:  # Caffe's backward reads the current (maybe overwritten) bottom
        x = current_top.detach().requires_grad_(True)
        leaves = [x]
        with torch.enable_grad():
            if record.module is not None:
                outputs = [record.module(x)]
            else:
                outputs = [record.node.target(x, *record.node.args[1:],  # type: ignore[operator]
                                              **record.node.kwargs)]
    params: list[torch.Tensor | None] = []
    if record.module is not None:
        for name, flag in zip(record.module.caffe_blobs, param_down):  # type: ignore[union-attr,arg-type]
            p = record.module._parameters.get(name)
            params.append(p if flag and p is not None and p.requires_grad else None)
    wanted_b = [x if j < len(bottom_need) and bottom_need[j] and x.requires_grad else None
                for j, x in enumerate(leaves)]
    inputs = [t for t in wanted_b + params if t is not None]
    pairs = [(o, g.to(o.device).reshape(o.shape)) for o, g in zip(outputs, top_diffs)
             if isinstance(o, torch.Tensor) and o.requires_grad]
    grads: dict[int, torch.Tensor | None] = {}
    if inputs and pairs:
        got = torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs],
                                  retain_graph=True, allow_unused=True)
        grads = {id(t): g for t, g in zip(inputs, got)}
    return ([grads.get(id(t)) if t is not None else None for t in wanted_b],
            [grads.get(id(t)) if t is not None else None for t in params])
