"""A per-layer summary of a Caffe net: tops, their shapes, parameter counts and FLOPs.

Runs the compiler's own pipeline (pipeline.py: read, NetState, filter_phase, insert_splits,
the layer DAG, the build on meta tensors), so shapes are the ones Caffe's Net::Init
(src/caffe/net.cpp) gives and rows follow Caffe's layer order, implicit Split layers
included.  Used by `caffe-fx info`; nothing here allocates a blob.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import pipeline
from .frontend.read import NetSource
from .lowering.builder import SOURCE_TYPES
from .lowering.geometry import pool_geometry
from .lowering.registry import CaffeModule, LayerView, lookup
from .proto import caffe_pb2

Shape = tuple[int, ...]

# The layer types whose FLOPs are counted; every other layer counts 0.
FLOP_TYPES = ("Convolution", "Deconvolution", "InnerProduct", "Eltwise", "Pooling", "LRN",
              "BatchNorm", "Scale", "Bias")

FLOPS_NOTE = ("FLOPs: a multiply-add counts 2 (Convolution, Deconvolution, InnerProduct); "
              "bias adds, Eltwise, Pooling, LRN, BatchNorm, Scale and Bias count per "
              "element; other layers count 0")


@dataclass(frozen=True)
class LayerRow:
    """One Caffe layer.  `top_shapes[j]` is None for a top Caffe names "(automatic)"
    whose shape is not known here; `params` counts every blob of the layer as
    net.params shows it (BatchNorm's running statistics included)."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    top_shapes: tuple[Shape | None, ...]
    param_shapes: tuple[Shape, ...]
    params: int
    flops: int
    implicit: bool  # a Split layer Caffe inserted (src/caffe/util/insert_splits.cpp)
    inplace: bool  # every top is the bottom at the same index


@dataclass(frozen=True)
class NetSummary:
    name: str
    source: str
    inputs: dict[str, Shape]
    outputs: tuple[str, ...]
    rows: tuple[LayerRow, ...]
    total_params: int  # blobs shared through ParamSpec names are counted once
    total_flops: int

    @property
    def param_bytes(self) -> int:
        return 4 * self.total_params  # Caffe's blobs are float32


def summarize(
    prototxt: NetSource,
    *,
    phase: str | int = "test",
    level: int = 0,
    stages: Sequence[str] = (),
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    caffe_proto: str | os.PathLike | None = None,
    trust_python_layers: bool = False,
) -> NetSummary:
    """The table `caffe-fx info` prints, computed without allocating any blob (but for
    Python layers, trusted as compile() trusts them: their setup and reshape run)."""
    prepared = pipeline.prepare(prototxt, phase=phase, level=level, stages=stages,
                                caffe_proto=caffe_proto)
    where, net, g = prepared.where, prepared.net, prepared.graph
    explicit = {layer.name for layer in prepared.source.layer}
    built = pipeline.lower(prepared, input_shapes=input_shapes,
                           python_layers={} if trust_python_layers else None)
    info = built.info
    modules: dict[str, CaffeModule] = {view.name: module for view, module in built.modules}

    shapes = dict(info.blob_shapes)
    rows: list[LayerRow] = []
    counted: set[str] = set()
    total_params = 0
    for i in sorted(g.nodes):
        layer: caffe_pb2.LayerParameter = g.nodes[i]["layer"]
        tops = list(layer.top)
        spec = lookup(layer.type)
        if spec is not None and spec.auto_top and not tops:
            tops = ["(automatic)" for _ in g.nodes[i]["tops"]]
        top_shapes = tuple(shapes.get(t) if t != "(automatic)" else
                           (() if spec is not None and spec.is_loss else None) for t in tops)
        module = modules.get(layer.name)
        blob_shapes = tuple(tuple(t.shape) for t in module.blob_tensors()) if module else ()
        params = sum(math.prod(s) for s in blob_shapes)
        for k, s in enumerate(blob_shapes):
            shared = layer.param[k].name if k < len(layer.param) else ""
            if shared and shared in counted:
                continue
            total_params += math.prod(s)
            if shared:
                counted.add(shared)
        bottom_shapes = [shapes[b] for b in layer.bottom]
        flops = 0
        if layer.type not in SOURCE_TYPES and spec is not None:
            view = LayerView(layer.name, layer.type, tuple(layer.bottom), tuple(layer.top),
                             layer, g.nodes[i]["phase"], tuple(bottom_shapes))
            flops = layer_flops(view, top_shapes, blob_shapes, where)
        rows.append(LayerRow(
            name=layer.name, type=layer.type, bottoms=tuple(layer.bottom), tops=tuple(tops),
            top_shapes=top_shapes, param_shapes=blob_shapes, params=params, flops=flops,
            implicit=layer.type == "Split" and layer.name not in explicit,
            inplace=bool(tops) and tuple(layer.top) == tuple(layer.bottom[:len(layer.top)]),
        ))
    return NetSummary(
        name=net.name, source=where,
        inputs={b: shapes[b] for b in info.inputs}, outputs=tuple(g.graph["outputs"]),
        rows=tuple(rows), total_params=total_params,
        total_flops=sum(r.flops for r in rows),
    )


def layer_flops(view: LayerView, top_shapes: Sequence[Shape | None],
                blob_shapes: Sequence[Shape], where: str = "<net>") -> int:
    """FLOPs of one forward pass of one layer, as FLOPS_NOTE states them."""
    if not top_shapes or top_shapes[0] is None or not view.input_shapes:
        return 0
    out = math.prod(top_shapes[0])
    inp = math.prod(view.input_shapes[0])
    who = f"{where}: layer '{view.name}' ({view.type})"
    t, p = view.type, view.param
    if t == "Convolution":
        # Every output element: one multiply-add per weight of its group's filter.
        per_out = math.prod(blob_shapes[0][1:])
        return 2 * out * per_out + (out if len(blob_shapes) > 1 else 0)
    if t == "Deconvolution":
        # The transpose: every input element scatters through its group's filters.
        per_in = math.prod(blob_shapes[0][1:])
        return 2 * inp * per_in + (out if len(blob_shapes) > 1 else 0)
    if t == "InnerProduct":
        n_out = blob_shapes[0][0] if not p.inner_product_param.transpose else blob_shapes[0][1]
        k = math.prod(blob_shapes[0]) // n_out
        m = out // n_out
        return 2 * m * k * n_out + (m * n_out if len(blob_shapes) > 1 else 0)
    if t == "Eltwise":
        ops = len(view.bottoms) - 1
        coeffs = len(p.eltwise_param.coeff) if p.eltwise_param.operation == \
            caffe_pb2.EltwiseParameter.SUM else 0
        return out * (ops + coeffs)
    if t == "Pooling":
        spatial = tuple(view.input_shapes[0][2:4])
        geo = pool_geometry(who, p.pooling_param, spatial)  # type: ignore[arg-type]
        return out * math.prod(geo.kernel)
    if t == "LRN":
        size = p.lrn_param.local_size
        window = size if p.lrn_param.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS \
            else size * size
        # A multiply-add per window element for the sum of squares, then the scale's
        # power and the division.
        return out * (2 * window + 2)
    if t == "BatchNorm":
        return 2 * out  # subtract the mean, multiply by 1/sqrt(var + eps)
    if t == "Scale":
        return out * (2 if p.scale_param.bias_term else 1)
    if t == "Bias":
        return out
    return 0


def format_shape(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def format_table(s: NetSummary) -> str:
    """A torchinfo-like text table; implicit Splits are marked with '*'."""
    header = ("Layer (type)", "Bottoms -> Tops", "Output shape", "Param #", "FLOPs")
    lines: list[tuple[str, ...]] = []
    for r in s.rows:
        kind = f"{r.type}*" if r.implicit else r.type
        wiring = f"{', '.join(r.bottoms) or '-'} -> {', '.join(r.tops) or '-'}"
        shapes = [format_shape(x) for x in r.top_shapes] or ["-"]
        lines.append((f"{r.name} ({kind})", wiring, shapes[0], f"{r.params:,}", f"{r.flops:,}"))
        for extra in shapes[1:]:
            lines.append(("", "", extra, "", ""))
    widths = [max(len(h), *(len(x[c]) for x in lines)) if lines else len(h)
              for c, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if k < 3 else c.rjust(w)
                         for k, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "=" * len(fmt(["-" * w for w in widths]))
    out = [rule, f"{s.name or 'Net'} ({s.source})", rule, fmt(header), "-" * len(rule)]
    out += [fmt(x) for x in lines]
    inputs = ", ".join(f"{b} {format_shape(v)}" for b, v in s.inputs.items()) or "none"
    out += [
        rule,
        f"Inputs: {inputs}",
        f"Outputs: {', '.join(s.outputs) or 'none'}",
        f"Total params: {s.total_params:,} ({_human(s.param_bytes)} as float32)",
        f"Total FLOPs: {s.total_flops:,} ({_giga(s.total_flops)} GFLOPs)",
        rule,
        FLOPS_NOTE + ".",
    ]
    if any(r.implicit for r in s.rows):
        out.append("* a Split layer Caffe inserts where one top feeds several layers.")
    return "\n".join(out)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def _giga(n: int) -> str:
    return f"{n / 1e9:.3f}"
