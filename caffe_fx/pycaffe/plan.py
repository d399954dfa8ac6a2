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

import numpy as np
import torch
from torch import fx

from ..lowering.registry import lookup
from ..proto import caffe_pb2
from .blob import Blob

_MAX = caffe_pb2.EltwiseParameter.MAX

# Caffe's Backward of these elementwise layers reads the blobs' data as they are at
# backward time, which a later in-place layer may have overwritten (CAFFE_REFERENCE §1.8:
# an in-place BNLL differentiates at its own output, a TanH followed by an in-place layer
# at that layer's output); their gradient is taken from the current data too.
READS_BOTTOM = frozenset({"AbsVal", "BNLL", "Clip"})
READS_DATA = frozenset({"ReLU", "Sigmoid", "TanH", "ELU"}) | READS_BOTTOM
# Their Backward_cpu is replayed step by step on the blobs' own arrays: in place, the top
# diff Caffe multiplies by is the bottom diff it has just overwritten (Power, Log), and
# the data read is the data as it is now (all three).
REPLAYED = frozenset({"Power", "Exp", "Log"})


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


def _f32(x: float) -> np.float32:
    return np.float32(x)


def replayed_backward(layer: caffe_pb2.LayerParameter, bottom: Blob, top: Blob) -> None:
    """Writes bottom.diff as src/caffe/layers/{power,exp,log}_layer.cpp's Backward_cpu do,
    in float32, through the same arrays (bottom is top for an in-place layer)."""
    x, y, dy, dx = bottom.data, top.data, top.diff, bottom.diff
    if layer.type == "Power":
        p = layer.power_param
        power, scale, shift = _f32(p.power), _f32(p.scale), _f32(p.shift)
        diff_scale = power * scale
        if diff_scale == 0 or power == 1:
            dx[...] = diff_scale
        elif power == 2:  # 2 * scale * (shift + scale * x)
            dx[...] = (diff_scale * scale) * x
            if shift != 0:
                dx += diff_scale * shift
        elif shift == 0:  # power * y / x
            dx[...] = y / x
            dx *= power
        else:  # diff_scale * y / (shift + scale * x)
            dx[...] = x
            if scale != 1:
                dx *= scale
            if shift != 0:
                dx += shift
            dx[...] = y / dx
            if diff_scale != 1:
                dx *= diff_scale
    elif layer.type == "Exp":
        p = layer.exp_param
        log_base = _f32(1) if p.base == -1 else np.log(_f32(p.base))
        inner_scale = log_base * _f32(p.scale)
        dx[...] = y * dy
        if inner_scale != 1:
            dx *= inner_scale
        return
    elif layer.type == "Log":
        p = layer.log_param
        log_base = _f32(1) if p.base == -1 else np.log(_f32(p.base))
        scale, shift = _f32(p.scale), _f32(p.shift)
        with np.errstate(divide="ignore", invalid="ignore"):
            num_scale = scale / log_base
            dx[...] = x
            if scale != 1:
                dx *= scale
            if shift != 0:
                dx += shift
            np.power(dx, _f32(-1), out=dx)
            if num_scale != 1:
                dx *= num_scale
    else:
        raise KeyError(layer.type)
    with np.errstate(invalid="ignore", over="ignore"):
        np.multiply(dy, dx, out=dx)


def lrn_inplace_backward(layer: caffe_pb2.LayerParameter, x: np.ndarray, blob: Blob) -> None:
    """In-place LRN (bottom is top) as lrn_layer.cpp's CPU backward runs it, where the
    bottom data it reads is the output.  `x` is the input as forward saw it.

    ACROSS_CHANNELS (CrossChannelBackward_cpu): its first step overwrites the top diff it
    then reads, so the incoming diff is lost (bottom_diff = scale^-2beta - ...).
    WITHIN_CHANNEL (its internal Split, Power(2), AVE Pooling, Power, PROD): the product's
    and the square's backward read the split blobs, which share the overwritten data."""
    p = layer.lrn_param
    size = int(p.local_size)
    alpha, beta = _f32(p.alpha), _f32(p.beta)
    y, dx = blob.data, blob.diff  # the top's data and diff are the bottom's
    if p.norm_region == caffe_pb2.LRNParameter.WITHIN_CHANNEL:
        sq = torch.from_numpy(x * x).requires_grad_(True)
        with torch.enable_grad():
            mean = torch.nn.functional.avg_pool2d(sq, size, 1, (size - 1) // 2, False, True)
        scale = mean.detach() * alpha + 1
        power = torch.pow(scale, -beta)
        yt, dy = torch.from_numpy(y), torch.from_numpy(dx.copy())
        g_mean = (-beta * alpha) * power / scale * (yt * dy)  # Power's general case
        (g_sq,) = torch.autograd.grad(mean, sq, g_mean)
        dx[...] = (power * dy + 2 * yt * g_sq).numpy()
        return
    scale_np = _f32(p.k) + (alpha / _f32(size)) * _channel_windows(x * x, size,
                                                                    (size - 1) // 2)
    dx[...] = np.power(scale_np, -beta)
    np.multiply(dx, dx, out=dx)  # caffe_mul(top_diff, bottom_diff): both are this array
    accum = _channel_windows(dx * y / scale_np, size, size - (size + 1) // 2)
    dx -= _f32(2.0 * p.alpha * p.beta / size) * y * accum


def _channel_windows(v: np.ndarray, size: int, pad_before: int) -> np.ndarray:
    """Sums over `size` consecutive channels of `v` zero-padded by `pad_before` channels
    in front (and size - 1 - pad_before behind): CrossChannel*'s padded running sums."""
    c = v.shape[1]
    padded = np.zeros((v.shape[0], c + size - 1) + v.shape[2:], np.float32)
    padded[:, pad_before:pad_before + c] = v
    cum = np.cumsum(padded, axis=1, dtype=np.float32)
    sums = cum[:, size - 1:].copy()
    sums[:, 1:] -= cum[:, :c - 1]
    return sums


def eltwise_max_backward(bottoms: list[torch.Tensor], top_diff: torch.Tensor
                         ) -> list[torch.Tensor]:
    """Eltwise MAX's bottom diffs through Caffe's mask (eltwise_layer.cpp Forward_cpu):
    bottoms 0 and 1 compare with `a > b`, so a tie goes to bottom 1; a later bottom takes
    over only where strictly greater, so a tie stays with the earlier one."""
    xs = [b.detach() for b in bottoms]
    first = xs[0] > xs[1]
    top = torch.where(first, xs[0], xs[1])
    mask = torch.where(first, 0, 1)
    for i in range(2, len(xs)):
        take = xs[i] > top
        top = torch.where(take, xs[i], top)
        mask = torch.where(take, i, mask)
    dy = top_diff.to(top.device).reshape(top.shape)
    return [torch.where(mask == i, dy, torch.zeros_like(dy)) for i in range(len(xs))]


def formula_backward(layer: caffe_pb2.LayerParameter, record: LayerTape,
                     top_diff: torch.Tensor) -> list[torch.Tensor | None] | None:
    """Bottom diffs by Caffe's own Backward_cpu formula where it is not the derivative of
    the forward (None for the other layers): SoftmaxWithLoss's prob - 1 ignores the
    FLT_MIN clamp (and the prob top's diff), MultinomialLogisticLoss divides by the
    clamped probability, ContrastiveLoss by dist + 1e-4, MVN by its std + eps."""
    xs = [b.detach() for b in record.leaves]
    if layer.type == "SoftmaxWithLoss":
        x, label = xs
        kw = record.node.kwargs
        axis = int(kw["axis"])  # type: ignore[arg-type]
        outer, classes = int(np.prod(x.shape[:axis])), x.shape[axis]
        inner = int(np.prod(x.shape[axis + 1:]))
        dx = torch.softmax(x, axis).reshape(outer, classes, inner).clone()
        lab = label.reshape(outer, inner).to(torch.int64)
        ignore = kw["ignore_label"]
        valid: torch.Tensor = torch.ones_like(lab, dtype=torch.bool) if ignore is None \
            else torch.ne(lab, int(ignore))  # type: ignore[arg-type]
        idx = torch.where(valid, lab, torch.zeros_like(lab)).unsqueeze(1)
        dx.scatter_add_(1, idx, -valid.to(dx.dtype).unsqueeze(1))
        dx = dx * valid.unsqueeze(1)
        norm = {"FULL": float(outer * inner), "VALID": float(valid.sum()),
                "BATCH_SIZE": float(outer)}.get(kw["normalization"], 1.0)  # type: ignore[arg-type]
        scale = top_diff.reshape(-1)[0] / max(norm, 1.0)
        return [(dx * scale).reshape(x.shape), None]
    if layer.type == "MultinomialLogisticLoss":
        prob, label = xs
        num = prob.shape[0]
        p = prob.reshape(num, -1)
        idx = label.reshape(-1)[:num].to(torch.int64).unsqueeze(1)
        scale = -top_diff.reshape(-1)[0] / num
        picked = torch.clamp(p.gather(1, idx), min=1e-20)
        dx = torch.zeros_like(p).scatter_(1, idx, scale / picked)
        return [dx.reshape(prob.shape), None]
    if layer.type == "ContrastiveLoss":
        a, b, sim = xs
        p = layer.contrastive_loss_param
        num = a.shape[0]
        d = (a - b).reshape(num, -1)
        dist_sq = (d * d).sum(1, keepdim=True)
        similar = sim.reshape(-1)[:num].to(torch.int64).unsqueeze(1) != 0
        grads: list[torch.Tensor | None] = []
        for sign in (1.0, -1.0):
            alpha = sign * top_diff.reshape(-1)[0] / num
            if p.legacy_version:
                mdist, beta = p.margin - dist_sq, -alpha
            else:
                dist = torch.sqrt(dist_sq)
                mdist = p.margin - dist
                beta = -alpha * mdist / (dist + 1e-4)
            dissimilar = torch.where(mdist > 0, beta * d, torch.zeros_like(d))
            grads.append(torch.where(similar, alpha * d, dissimilar).reshape(a.shape))
        return grads + [None]
    if layer.type == "MVN":
        p = layer.mvn_param
        x = xs[0]
        rows = x.reshape(x.shape[0], -1) if p.across_channels \
            else x.reshape(x.shape[0] * x.shape[1], -1)
        dy = top_diff.to(x.device).reshape(rows.shape)
        dim = rows.shape[1]
        mean = rows.mean(1, keepdim=True)
        if not p.normalize_variance:
            return [(dy - dy.sum(1, keepdim=True) / dim).reshape(x.shape)]
        var = (rows * rows).mean(1, keepdim=True) - mean * mean
        std = torch.sqrt(var) + p.eps
        y = (rows - mean) / std
        dx = dy - dy.sum(1, keepdim=True) / dim - y * (y * dy).sum(1, keepdim=True) / dim
        return [(dx / std).reshape(x.shape)]
    return None


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
    if layer.type == "Eltwise" and layer.eltwise_param.operation == _MAX:
        by_formula: list[torch.Tensor | None] | None = eltwise_max_backward(leaves,
                                                                           top_diffs[0])
    else:
        by_formula = formula_backward(layer, record, top_diffs[0]) if current_top is None \
            else None
    if by_formula is not None:
        return ([g if j < len(bottom_need) and bottom_need[j] else None
                 for j, g in enumerate(by_formula)], [])
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
