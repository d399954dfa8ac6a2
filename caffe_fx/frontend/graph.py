"""NetParameter -> networkx DAG of layers, with every blob resolved to a value.

Frontend, last step.  Walks the (filtered, split-inserted) layers as Net::Init does
(src/caffe/net.cpp: AppendBottom/AppendTop): a bottom must name an existing blob; a top
equal to the bottom at the same index is in-place and makes a new *version* of that
blob; any other top whose name already exists is an error.  Each version is a `Value`,
the unit the builder turns into one fx node.

Keys (documented, read by the later passes and the builder):
  node attrs:  layer (LayerParameter), phase (int), bottoms, tops (value ids)
  graph attrs: source, values ({id: Value}), blobs ({blob name: final value id}, in
               Caffe's net.blobs order), inputs (Input-layer tops), outputs (blobs never
               consumed, sorted by name as Caffe's std::set gives them)
A loss layer written with fewer tops than Caffe creates for it (LossLayer::AutoTopBlobs)
gets anonymous values (blob None) for the rest; how many, `auto_tops` says (the layer
registry's, passed in by the pipeline: the frontend does not import the lowering).
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from ..errors import NetDefinitionError, together
from ..proto import caffe_pb2


@dataclass(frozen=True)
class Value:
    id: str  # unique over the net
    blob: str | None  # Caffe's blob name; None for an anonymous (automatic) top
    producer: int  # layer index
    top_index: int
    inplace: bool  # written in place over the previous version of `blob`


def wiring_problems(net: caffe_pb2.NetParameter, where: str = "<net>"
                    ) -> list[NetDefinitionError]:
    """Every wiring error Net::Init would stop at, in layer order: bottoms no earlier
    layer produces ("Unknown bottom blob") and tops produced twice ("Top blob produced by
    multiple sources"), every reader of a missing blob named."""
    problems: list[NetDefinitionError] = []
    known: dict[str, None] = dict.fromkeys(net.input)
    for layer in net.layer:
        who = f"{where}: layer '{layer.name}' ({layer.type})"
        for j, blob in enumerate(layer.bottom):
            if blob not in known:
                problems.append(NetDefinitionError(
                    f"{who}: bottom[{j}] = '{blob}' is not produced by any earlier layer "
                    f"(Unknown bottom blob); {_known(blob, list(known))}"))
        for j, blob in enumerate(layer.top):
            inplace = j < len(layer.bottom) and layer.bottom[j] == blob
            if not inplace and blob in known:
                problems.append(NetDefinitionError(
                    f"{who}: top[{j}] = '{blob}' is already produced by another layer (Top "
                    "blob produced by multiple sources); in-place use needs the same name "
                    "at the same bottom index"))
            known[blob] = None
    return problems


def _known(blob: str, known: list[str]) -> str:
    if not known:
        return "no layer before it has tops"
    if len(known) <= 12:
        return f"known blobs: {', '.join(known)}"
    close = difflib.get_close_matches(blob, known, n=3)
    near = f"; the closest: {', '.join(close)}" if close else ""
    return f"{len(known)} blobs are known{near}"


def build_graph(net: caffe_pb2.NetParameter, where: str = "<net>", *,
                auto_tops: Callable[[str], int]) -> nx.DiGraph:
    """`auto_tops(type)`: how many tops Net::AppendTop creates for a layer of that type."""
    problems = wiring_problems(net, where)
    if problems:
        raise together(problems, where)
    g = nx.DiGraph(source=where)
    values: dict[str, Value] = {}
    current: dict[str, str] = {}  # blob name -> id of its latest version
    consumed: set[str] = set()
    order: list[str] = []
    inputs: list[str] = []
    net_phase = net.state.phase
    for i, layer in enumerate(net.layer):
        bottoms = []
        for blob in layer.bottom:
            bottoms.append(current[blob])
            consumed.add(blob)
        tops = []
        for j, blob in enumerate(layer.top):
            inplace = j < len(layer.bottom) and layer.bottom[j] == blob
            vid = _unique(f"{blob}@{layer.name}" if inplace else blob, values)
            values[vid] = Value(vid, blob, i, j, inplace)
            tops.append(vid)
            if not inplace:
                order.append(blob)
            current[blob] = vid
            consumed.discard(blob)
        for j in range(len(tops), auto_tops(layer.type)):
            vid = _unique(f"{layer.name}_automatic_{j}", values)
            values[vid] = Value(vid, None, i, j, False)
            tops.append(vid)
        if layer.type == "Input":
            inputs.extend(layer.top)
        phase = layer.phase if layer.HasField("phase") else net_phase
        g.add_node(i, layer=layer, phase=phase, bottoms=bottoms, tops=tops)
        for vid in bottoms:
            g.add_edge(values[vid].producer, i)
    g.graph["values"] = values
    g.graph["blobs"] = {blob: current[blob] for blob in order}
    g.graph["inputs"] = inputs
    g.graph["outputs"] = sorted(b for b in current if b not in consumed)
    if not nx.is_directed_acyclic_graph(g):  # cannot happen for a valid layer order
        raise NetDefinitionError(f"{where}: the layer graph has a cycle")
    return g


def _unique(candidate: str, taken: dict[str, Value]) -> str:
    vid, k = candidate, 1
    while vid in taken:
        k += 1
        vid = f"{candidate}#{k}"
    return vid
