"""Convolution -> BatchNorm -> Scale -> Eltwise SUM -> ReLU chains as one node
(ops/fused.py).

Lowering stage, after the weights are bound; `compile(..., fuse=True)`, its default.  A
chain starts at a 2-D Convolution with one bottom (axis 1, not Deconvolution) and takes,
in this order and each optional, a BatchNorm with global statistics, a Scale with learned
per-channel blobs and one bottom (axis 1), an Eltwise SUM of two bottoms without
coefficients whose other bottom is computed before the chain starts (the sum closing a
ResNet or MobileNet v2 block: of the shortcut's and the last convolution's chains, the
later one takes it), and a ReLU with negative_slope 0 - at least one of the four (a
Convolution -> ReLU pair, every convolution of AlexNet, VGG and SqueezeNet, saves the
ReLU's pass over the top; the sum saves two passes).  Each value inside the chain must have
that next layer as its only reader and not be an output, so no result the GraphModule
returns changes beyond rounding: in Caffe such chains run in place, and only the end is
ever in the blob.  The modules stay where they are (state_dict, `gm.meta["caffe"].modules`
and the weight writers see the same names and tensors); the fused node reads their
tensors.
"""
from __future__ import annotations

import torch
from torch import fx

from ..ops.eltwise import eltwise_add
from ..ops.functional import ave_pool, max_pool
from ..ops.fused import conv_bn_scale_relu
from .builder import Lowering
from .layers.batch_norm import BatchNorm
from .layers.convolution import CaffeConv
from .layers.scale_bias import ScaleBias

_RELU = (torch.relu, torch.relu_)
# Ops whose result is a tensor of its own (for _sums_in_place).
_FRESH = (conv_bn_scale_relu, eltwise_add, max_pool, ave_pool)


def _sole_reader(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    if len(users) != 1 or users[0].op == "output":
        return None
    user = users[0]
    return user if user.all_input_nodes == [node] else None  # no other bottom, arg or kwarg


def _residual_sum(end: fx.Node, first: fx.Node) -> tuple[fx.Node, fx.Node, int] | None:
    """The Eltwise SUM of two bottoms without coefficients that alone reads `end`, when
    its other bottom is computed before `first`: (the sum, the other bottom, its index
    among the sum's bottoms)."""
    users = list(end.users)
    if len(users) != 1:
        return None
    node = users[0]
    if node.op != "call_function" or node.target is not eltwise_add or len(node.args) != 2 \
            or set(node.kwargs) - {"layer"}:
        return None
    index = 1 if node.args[0] is end else 0
    other = node.args[index]
    if node.args[1 - index] is not end or not isinstance(other, fx.Node) or other is end:
        return None
    walk = other.next
    while walk is not first:
        if walk.op == "root":  # the graph's end: `other` comes after the chain
            return None
        walk = walk.next
    return node, other, index


def _module(gm: fx.GraphModule, node: fx.Node | None, kind: type) -> object | None:
    if node is None or node.op != "call_module":
        return None
    module = gm.get_submodule(node.target)
    return module if type(module) is kind else None


def fuse_conv_chains(gm: fx.GraphModule) -> int:
    """Rewrites every chain in `gm`; returns how many it fused."""
    info: Lowering = gm.meta["caffe"]
    fused = 0
    for node in list(gm.graph.nodes):
        conv = _module(gm, node, CaffeConv)
        if conv is None or conv.transposed or conv.axis != 1 or conv.weight.dim() != 4 \
                or len(node.args) != 1 or node.kwargs:
            continue
        k = conv.weight.shape[0]
        chain, end = [node], node
        reader = _sole_reader(end)
        bn = _module(gm, reader, BatchNorm)
        if bn is not None and bn.use_global_stats and bn.mean.shape == (k,):
            end = reader
            chain.append(end)
        else:
            bn = None
        reader = _sole_reader(end)
        scale = _module(gm, reader, ScaleBias)
        if scale is not None and scale.axis == 1 and len(reader.args) == 1 \
                and all(t is None or t.shape == (k,) for t in (scale.weight, scale.bias)):
            end = reader
            chain.append(end)
        else:
            scale = None
        residual = _residual_sum(end, node)
        if residual is not None:
            end = residual[0]
            chain.append(end)
        relu = _sole_reader(end)
        if relu is not None and relu.op == "call_function" and relu.target in _RELU \
                and not relu.kwargs:
            end = relu
            chain.append(relu)
        else:
            relu = None
        if bn is None and scale is None and residual is None:
            if relu is None:
                continue
            _relu_into_conv(gm, info, node, relu)
        else:
            _replace(gm, info, chain, conv, bn, scale, relu is not None,
                     None if residual is None else residual[1:])
        fused += 1
    if fused:
        gm.graph = _copied(gm.graph)
        _sums_in_place(gm)
        gm.graph.lint()
        gm.recompile()
    return fused


def _fresh(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether `node`'s value is a tensor of its own, never a view or the very tensor of
    an input (a fused sum that writes into its `add` shares that tensor's memory:
    _unseen_after follows it)."""
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))) is CaffeConv
    return node.op == "call_function" and node.target in _FRESH


def _sums_in_place(gm: fx.GraphModule) -> None:
    """A fused sum writes into its `add` (`add_in_place = True`: oneDNN's sum into that
    tensor, no new one) when nothing can see that tensor again: it and every tensor it
    shares memory with (the earlier sums written into it) is made by a layer of its own
    (no input, weight or view), is no output and not the convolution's bottom, and each
    of their other readers runs before this node and makes a tensor of its own.  So in
    ResNet's every block: its shortcut is read by the block's first convolution, which
    runs before its last."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in gm.graph.nodes:
        add = node.kwargs.get("add") if node.target is conv_bn_scale_relu else None
        if not isinstance(add, fx.Node) or add in node.args:
            continue  # (the convolution's own bottom: a one-convolution branch)
        if _unseen_after(gm, node, add, order):
            node.kwargs = {**node.kwargs, "add_in_place": True}


def _unseen_after(gm: fx.GraphModule, node: fx.Node, add: fx.Node,
                  order: dict[fx.Node, int]) -> bool:
    """Whether nothing reads `add`'s memory once `node` runs (see _sums_in_place)."""
    members = [add]  # the tensors sharing add's memory, latest first
    while (into := _writes_into(members[-1])) is not None:
        members.append(into)
    for m in members:
        if not _fresh(gm, m):
            return False
        for user in m.users:
            if user is node or (user in members and _writes_into(user) is m):
                continue  # this sum, or the earlier sum that wrote into m
            if user.op == "output" or order[user] >= order[node] or not _fresh(gm, user) \
                    or _writes_into(user) is m:
                return False
    return True


def _writes_into(node: fx.Node) -> fx.Node | None:
    """The tensor a fused sum writes into, if it does."""
    if node.target is conv_bn_scale_relu and node.kwargs.get("add_in_place"):
        return node.kwargs["add"]
    return None


def _copied(graph: fx.Graph) -> fx.Graph:
    """`graph` in a fresh namespace, so that each fused node takes its chain end's name
    (the erased node's name is not released in the old one)."""
    out = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        env[node] = out.node_copy(node, lambda n: env[n])
    return out


def _relu_into_conv(gm: fx.GraphModule, info: Lowering, conv: fx.Node, relu: fx.Node) -> None:
    """Convolution -> ReLU: the conv's own node, called with relu=True, under the ReLU's
    name (`relu1 = self.conv1(data, relu = True)`)."""
    names = [conv.meta.get("caffe_layer", conv.name), relu.meta.get("caffe_layer", relu.name)]
    conv.kwargs = {"relu": True}
    conv.meta.update(relu.meta)
    conv.meta["caffe_layers"] = names
    relu.replace_all_uses_with(conv)
    inner = conv.name
    gm.graph.erase_node(relu)
    conv.name = relu.name  # unique once _copied() gives the graph a clean namespace
    _drop_values(info, {inner})


def _drop_values(info: Lowering, inner: set[str]) -> None:
    """The values of a fused chain's inner nodes are gone; the fused node carries the
    end's name, so the end's values keep theirs."""
    for vid, name in list(info.value_nodes.items()):
        if name in inner:
            del info.value_nodes[vid]


def _replace(gm: fx.GraphModule, info: Lowering, chain: list[fx.Node], conv: CaffeConv,
             bn: BatchNorm | None, scale: ScaleBias | None, relu: bool,
             residual: tuple[fx.Node, int] | None) -> None:
    graph, first, end = gm.graph, chain[0], chain[-1]
    names = [n.meta.get("caffe_layer", n.name) for n in chain]

    def attr(module_node: fx.Node | None, name: str) -> fx.Node | None:
        if module_node is None or getattr(gm.get_submodule(module_node.target), name) is None:
            return None
        return graph.get_attr(f"{module_node.target}.{name}")

    bn_node = chain[1] if bn is not None else None
    scale_node = chain[1 + (bn is not None)] if scale is not None else None
    with graph.inserting_before(first):
        args = (first.args[0], attr(first, "weight"), attr(first, "bias"),
                attr(bn_node, "mean"), attr(bn_node, "variance"),
                attr(bn_node, "scale_factor"), attr(scale_node, "weight"),
                attr(scale_node, "bias"))
        kwargs = dict(
            stride=list(conv.stride), pad=list(conv.padding), dilation=list(conv.dilation),
            groups=conv.groups, eps=float(bn.eps) if bn is not None else 0.0, relu=relu,
            layers=",".join(names))
        if residual is not None:
            kwargs.update(add=residual[0], add_bottom=residual[1])
        new = graph.call_function(conv_bn_scale_relu, args, kwargs)
    new.meta.update(end.meta)
    new.meta["caffe_layers"] = names
    end.replace_all_uses_with(new)
    gone = {n.name for n in chain}
    end_name = end.name
    for n in reversed(chain):
        graph.erase_node(n)
    new.name = end_name  # unique now; _copied() gives it a clean namespace
    _drop_values(info, gone - {end_name})
