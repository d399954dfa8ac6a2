"""Every value of a built net as an output: the GraphModule the pycaffe facade runs.

Lowering stage, after the builder.  Caffe keeps every blob version and its diff; pycaffe
reads them all.  This pass rewrites a built GraphModule so that it returns
{value id: tensor} for every value of the layer DAG (frontend/graph.py), with the tops of
pass-through layers (Split, TEST Dropout) as views of their own, so that autograd keeps
one gradient per top as Caffe keeps one diff per blob (SplitLayer::Backward sums them).
"""
from __future__ import annotations

import networkx as nx
import torch
from torch import fx

from .builder import Lowering


def alias(x: torch.Tensor) -> torch.Tensor:
    """A new tensor over the same memory: Caffe's Blob::ShareData between two blobs."""
    return x.view_as(x)


fx.wrap("alias")


def expose_values(gm: fx.GraphModule, g: nx.DiGraph) -> fx.GraphModule:
    """A copy of `gm` (sharing its submodules) returning every value of `g` by id.

    In-place ReLU (`torch.relu_`) becomes out of place: its bottom is an output too."""
    info: Lowering = gm.meta["caffe"]
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op == "output":
            continue
        new = graph.node_copy(node, lambda n: env[n])
        if new.op == "call_function" and new.target is torch.relu_:
            new.target = torch.relu
        env[node] = new
    by_name = {n.name: env[n] for n in gm.graph.nodes if n in env}
    layer_nodes = {n.meta["caffe_layer"]: n for n in graph.nodes
                   if "caffe_layer" in n.meta and n.op in ("call_module", "call_function")}
    outputs: dict[str, fx.Node] = {}
    seen: set[str] = set()
    for i in sorted(g.nodes):
        attrs = g.nodes[i]
        layer = attrs["layer"]
        node = layer_nodes.get(layer.name)
        if node is not None:  # the builder passes bottom j as argument j (or item j)
            packed = bool(node.args) and isinstance(node.args[0], (list, tuple))
            args = list(node.args[0] if packed else node.args)
            for j, vid in enumerate(attrs["bottoms"]):
                if vid in outputs and j < len(args):
                    arg = args[j]
                    if isinstance(arg, fx.Node) and arg.op == "call_method" \
                            and arg.target == "detach":  # propagate_down: false
                        arg.args = (outputs[vid],)
                    else:
                        args[j] = outputs[vid]
            node.args = (args, *node.args[1:]) if packed else tuple(args)
        for vid in attrs["tops"]:
            name = info.value_nodes.get(vid)
            if name is None or name not in by_name:
                continue  # a value nothing needed (pruned)
            value = by_name[name]
            if name in seen:  # a pass-through top: its own view, read by its consumer
                with graph.inserting_after(value):
                    value = graph.call_function(alias, (value,))
                value.meta["caffe_layer"] = layer.name
            seen.add(name)
            outputs[vid] = value
    graph.output(outputs)
    out = fx.GraphModule(gm, graph, class_name=type(gm).__name__)
    out.graph.eliminate_dead_code()  # impure nodes (Python layers) stay: needs the owner
    out.recompile()
    out.meta["caffe"] = info
    out.train(gm.training)
    return out
