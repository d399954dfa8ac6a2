"""Net::Init's backward analysis for the pycaffe facade: which layers, bottoms and params
Caffe differentiates.

pycaffe facade.  Mirrors src/caffe/net.cpp (Init's "need backward" sweeps, force_backward,
propagate_down).  The gradients themselves are the ops' (caffe_fx/ops): Net.backward only
chooses what to ask autograd for.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..lowering.registry import lookup, top_loss_weights
from ..proto import caffe_pb2


@dataclass(frozen=True)
class Plan:
    """Net::Init's backward flags, per layer in net order."""

    layer_need_backward: tuple[bool, ...]
    bottom_need_backward: tuple[tuple[bool, ...], ...]
    param_propagate_down: tuple[tuple[bool, ...], ...]

    @property
    def any(self) -> bool:
        return any(self.layer_need_backward)


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
