"""A Caffe net as a Graphviz DOT graph, drawn the way pycaffe's python/caffe/draw.py does.

Layers are filled record boxes labelled with their name, type (Pooling with its method)
and, for Convolution, Deconvolution and Pooling, kernel size, stride and pad; blobs are
grey octagons; a layer working in place (one bottom, one top, the same blob) is light
green and drawn on its blob (an edge to it and one back).  Colours by type as draw.py's
choose_color_by_layertype.  Edges into a top carry num_output (Convolution,
Deconvolution, InnerProduct) or the batch size (Data).  Unlike draw.py, every blob is an
octagon (draw.py restyles a blob it sees as a top, so output blobs lose their style), and
node ids never collide with labels.  Rendering to svg/png needs Graphviz's `dot` binary.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from . import pipeline
from .errors import ExportError, MissingDependencyError, UnsupportedFieldError
from .frontend.read import NetSource, describe, read_net
from .lowering.geometry import conv_geometry, pool_geometry
from .passes.filter_phase import filter_phase
from .proto import caffe_pb2

RANKDIRS = ("LR", "TB", "BT", "RL")
RENDERED_FORMATS = ("svg", "png", "pdf")

LAYER_COLOR_DEFAULT = "#6495ED"
LAYER_COLORS = {
    "Convolution": "#FF5050",
    "Deconvolution": "#FF5050",
    "Pooling": "#FF9900",
    "InnerProduct": "#CC33FF",
}
INPLACE_COLOR = "#90EE90"  # draw.py's NEURON_LAYER_STYLE
BLOB_COLOR = "#E0E0E0"


def net_to_dot(
    prototxt: NetSource,
    *,
    phase: str | None = None,
    rankdir: str = "LR",
    label_edges: bool = True,
    stages: Sequence[str] = (),
    caffe_proto: str | os.PathLike | None = None,
) -> str:
    """DOT text of the net.  `phase` None draws every layer (draw_net.py's ALL);
    "train"/"test" keeps the layers Caffe's NetState rules keep for that phase (the
    pipeline's first pass, on Net::Net's NetState: the file's own, with `stages` added).
    `caffe_proto`: a fork's caffe.proto, as compile() takes it."""
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir = {rankdir!r}; allowed: {', '.join(RANKDIRS)}")
    where = describe(prototxt)
    net = read_net(prototxt, caffe_proto)
    if phase is not None:
        net = pipeline.run_passes(pipeline.with_state(net, phase, 0, stages), where,
                                  (filter_phase,))
    # Vertical layouts have room across, horizontal ones down (draw.py's separators).
    sep = " " if rankdir in ("TB", "BT") else r"\n"
    lines = [f"digraph {_quote(net.name or 'Net')} {{", f"  rankdir={rankdir};"]
    blobs: list[str] = []
    edges: list[str] = []
    for layer in net.layer:
        node = _quote(f"layer:{layer.name}")
        inplace = (len(layer.bottom) == 1 and len(layer.top) == 1
                   and layer.bottom[0] == layer.top[0])
        color = INPLACE_COLOR if inplace else LAYER_COLORS.get(layer.type, LAYER_COLOR_DEFAULT)
        label = sep.join(_escape_record(x) for x in layer_label(layer, where))
        lines.append(f"  {node} [shape=record, style=filled, fillcolor={_quote(color)}, "
                     f"label={_quote(label, escaped=True)}];")
        for b in layer.bottom:
            if b not in blobs:
                blobs.append(b)
            edges.append(f"  {_quote('blob:' + b)} -> {node};")
        edge_label = _edge_label(layer) if label_edges else None
        for t in layer.top:
            if t not in blobs:
                blobs.append(t)
            attrs = f" [label={_quote(edge_label)}]" if edge_label else ""
            edges.append(f"  {node} -> {_quote('blob:' + t)}{attrs};")
    for b in blobs:
        lines.append(f"  {_quote('blob:' + b)} [shape=octagon, style=filled, "
                     f"fillcolor={_quote(BLOB_COLOR)}, label={_quote(b)}];")
    lines += edges
    lines.append("}")
    return "\n".join(lines) + "\n"


def layer_label(layer: caffe_pb2.LayerParameter, where: str = "<net>") -> list[str]:
    """Name, (type), and for spatial layers kernel size, stride and pad."""
    parts = [layer.name]
    if layer.type == "Pooling":
        method = caffe_pb2.PoolingParameter.PoolMethod.Name(layer.pooling_param.pool)
        parts.append(f"({layer.type} {method})")
    else:
        parts.append(f"({layer.type})")
    who = f"{where}: layer '{layer.name}' ({layer.type})"
    if layer.type in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        try:
            geo = conv_geometry(who, p, max(len(p.kernel_size), 2))
        except UnsupportedFieldError:
            geo = None  # malformed: the compiler reports it; the drawing still shows the layer
        if geo is not None:
            parts += _spatial(geo.kernel, geo.stride, geo.pad)
    elif layer.type == "Pooling":
        p = layer.pooling_param
        if p.global_pooling:
            parts.append("global")
        else:
            try:
                geo = pool_geometry(who, p, (0, 0))
            except UnsupportedFieldError:
                geo = None
            if geo is not None:
                parts += _spatial(geo.kernel, geo.stride, geo.pad)
    return parts


def render(dot_text: str, fmt: str) -> bytes:
    """DOT text -> svg/png/pdf bytes through Graphviz's `dot` binary."""
    if fmt not in RENDERED_FORMATS:
        raise ValueError(f"format {fmt!r}; allowed: {', '.join(RENDERED_FORMATS)}")
    dot = shutil.which("dot")
    if dot is None:
        raise MissingDependencyError(
            f"drawing to .{fmt} needs Graphviz's `dot` binary, which is not on PATH "
            "(install graphviz, e.g. apt-get install graphviz); or write .dot text instead")
    proc = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                          check=False, env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        raise ExportError(f"dot -T{fmt} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _spatial(kernel: tuple[int, ...], stride: tuple[int, ...],
             pad: tuple[int, ...]) -> list[str]:
    def show(v: tuple[int, ...]) -> str:
        return str(v[0]) if len(set(v)) == 1 else "x".join(str(x) for x in v)

    return [f"kernel size: {show(kernel)}", f"stride: {show(stride)}", f"pad: {show(pad)}"]


def _edge_label(layer: caffe_pb2.LayerParameter) -> str | None:
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return None


def _escape_record(text: str) -> str:
    # In a record label these characters make fields and ports.
    for ch in "\\{}|<>":
        text = text.replace(ch, "\\" + ch)
    return text


def _quote(text: str, escaped: bool = False) -> str:
    """A DOT quoted string.  Graphviz reads backslash escapes in labels (`\\n`, `\\N`),
    so backslashes are doubled unless `escaped` says the text is already escaped."""
    if not escaped:
        text = text.replace("\\", "\\\\")
    return '"' + text.replace('"', '\\"').replace("\n", "\\n") + '"'
