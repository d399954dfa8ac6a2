"""The one place that wires the torch.fx graph.

Lowering stage.  Takes the analysed layer DAG (frontend/graph.py), asks each layer's
registered function for a `Call`, a `CaffeModule` or `IDENTITY`, runs it on meta tensors
to give every value Caffe's shape (the infer_shapes step), then emits one fx node per
value: nodes are named after blobs (in-place writers after their layer), modules after
layers.  Mirrors the layer set-up loop of Net::Init (src/caffe/net.cpp).

Keys on the emitted nodes' `meta`: `caffe_blob` (the Caffe blob a node holds), `shape`
(that blob's shape as Net::Init gives it: the infer_shapes result, also in
`Lowering.blob_shapes`), `caffe_layer` (the layer a call node runs).
"""
from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import torch
from torch import fx, nn

from ..errors import (CaffeFxError, IgnoredFieldWarning, InputError, NetDefinitionError,
                      ProtoParseError, ShapeError, UnsupportedFieldError, UnsupportedLayerError,
                      spelled, together, with_message)
from ..frontend.graph import Value
from ..frontend.read import unknown_fields_message
from ..ops.eltwise import eltwise_add
from ..ops.shape import caffe_concat
from ..proto import caffe_pb2
from .naming import Namer
from .layers.python import is_python_source
from .registry import (IDENTITY, Call, CaffeModule, LayerSpec, LayerView, field_problems,
                       ignored_fields, lookup)
from .._limits import check_net_total, check_shape

# Layers whose tops become the GraphModule's inputs.  Input declares shapes; the data
# layers read files (LMDB, images, HDF5) that a PyTorch pipeline replaces, so their tops
# are fed like inputs and their shapes come from `input_shapes=`.
SOURCE_TYPES = frozenset({
    "Input", "Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "AnnotatedData",
    "DenseImageData", "ImageLabelmapData",
})


def is_source(layer: caffe_pb2.LayerParameter) -> bool:
    """Whether the layer's tops become inputs: a type of SOURCE_TYPES, or a Python layer
    without bottoms (a data layer: its code is not imported; the facade runs it instead)."""
    return layer.type in SOURCE_TYPES or is_python_source(layer)


@dataclass(frozen=True)
class ParamSpecInfo:
    """One layer blob as Net::AppendParam sees it (src/caffe/net.cpp).

    `name` is its qualified name in the GraphModule (`gm.get_parameter(name)`, or
    `get_buffer` for BatchNorm's statistics); `lr_mult`/`decay_mult` are what Caffe's
    params_lr()/params_weight_decay() hold for the learnable blob (for a shared blob the
    owner's, or the first sharer's where the owner left it unset); `share` is the
    ParamSpec name ("" if none) and `owner` the qualified name of the blob it shares
    (None when the blob owns itself, i.e. is one of Caffe's learnable_params_)."""

    name: str
    layer: str
    blob_index: int
    lr_mult: float
    decay_mult: float
    share: str = ""
    owner: str | None = None


@dataclass
class Lowering:
    """What the builder produced besides the GraphModule (kept in `gm.meta["caffe"]`)."""

    inputs: list[str]
    outputs: list[str]
    blob_shapes: dict[str, tuple[int, ...]]
    layers: list[str]
    modules: dict[str, str] = field(default_factory=dict)  # Caffe layer -> submodule name
    value_nodes: dict[str, str] = field(default_factory=dict)  # value id -> fx node name
    # Every layer blob in Net::Init's order (so the owners in Caffe's learnable_params_
    # order); see ParamSpecInfo.
    param_specs: dict[str, ParamSpecInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class Built:
    """What build() returns: the GraphModule (its submodules still on the meta device),
    the Lowering (also `gm.meta["caffe"]`) and each layer module with its view, in the
    net's order, for the weight binder (binding.py)."""

    gm: fx.GraphModule
    info: Lowering
    modules: tuple[tuple[LayerView, CaffeModule], ...]


def _all_source_shapes(g: nx.DiGraph, given: Mapping[str, Sequence[int]], where: str,
                       problems: list[CaffeFxError]) -> dict[int, list[tuple[int, ...]]]:
    """The shapes of the tops of every input and data layer that has them; the others'
    problems are appended to `problems`."""
    out: dict[int, list[tuple[int, ...]]] = {}
    for i in sorted(g.nodes):
        layer = g.nodes[i]["layer"]
        if is_source(layer):
            try:
                out[i] = _source_shapes(layer, given, where)
            except CaffeFxError as e:
                problems.append(e)
    return out


def _flag_dims(dims: str) -> str:
    """A shape as written for input_shapes= ("(N, C, H, W)"), as --input-shape takes it."""
    return dims.split(":")[0].strip("()").replace(" ", "")


def _source_shapes(layer: caffe_pb2.LayerParameter, given: Mapping[str, Sequence[int]],
                   where: str) -> list[tuple[int, ...]]:
    if layer.type == "Python":  # a Python data layer: every top's shape is given
        from ..data.top_shapes import python_top_shapes
        return [check_shape(list(dims), f"{where}: input_shapes['{top}']")
                for top, dims in zip(layer.top, python_top_shapes(layer, given, where))]
    shapes = []
    declared = list(layer.input_param.shape) if layer.type == "Input" else []
    if declared and len(declared) not in (1, len(layer.top)):
        raise NetDefinitionError(
            f"{where}: layer '{layer.name}' (Input): input_param has {len(declared)} shapes "
            f"for {len(layer.top)} tops; allowed: 0, 1, or one per top")
    from ..data import DATA_LAYER_TYPES, data_top_shapes

    read: list[tuple[int, ...]] | None = None  # what the data layer's set-up gives
    for j, top in enumerate(layer.top):
        if top in given:
            dims = given[top]
            if isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
                raise InputError(f"{where}: input_shapes['{top}'] = {dims!r}; allowed: a "
                                 "sequence of ints such as (N, C, H, W)")
            shapes.append(check_shape(list(dims), f"{where}: input_shapes['{top}']"))
        elif declared:
            k = j if len(declared) > 1 else 0
            shapes.append(check_shape(
                declared[k].dim,
                f"{where}: layer '{layer.name}' (Input): input_param.shape[{k}]"))
        elif layer.type in DATA_LAYER_TYPES:
            read = read or data_top_shapes(layer, where)
            shapes.append(check_shape(read[j], f"{where}: layer '{layer.name}' "
                                                f"({layer.type}): top '{top}'"))
        else:
            # AnnotatedData's label (SSD): one row per box, their count varies per batch.
            dims = "(1, 1, N_gt, 8): rows [item, label, instance, xmin, ymin, xmax, ymax, " \
                "difficult], any N_gt per call" if layer.type == "AnnotatedData" and j == 1 \
                else "(N, C, H, W)"
            raise InputError(
                f"{where}: layer '{layer.name}' ({layer.type}) reads its data from files "
                f"that caffe_fx does not read; its top '{top}' becomes an input: give its "
                "shape with " + spelled(f"input_shapes={{'{top}': {dims}}}",
                                        f"--input-shape {top}={_flag_dims(dims)}"))
    return shapes


def build(g: nx.DiGraph, *, input_shapes: Mapping[str, Sequence[int]] | None = None,
          outputs: Sequence[str] | None = None, read_problems: Sequence[str] = (),
          untrusted: str | None = None) -> Built:
    """The fx graph of the layer DAG `g`.  `read_problems` (fields no schema knows, from
    the frontend) and `untrusted` (the refusal of Python layers the caller did not trust)
    are reported with the net's other problems, all in one error, before anything is
    set up."""
    where = g.graph["source"]
    given = dict(input_shapes or {})
    values: dict[str, Value] = g.graph["values"]
    blobs: dict[str, str] = g.graph["blobs"]

    sources = [b for i in g.nodes if is_source(g.nodes[i]["layer"])
               for b in g.nodes[i]["layer"].top]
    bad = sorted(set(given) - set(sources))
    if bad:
        flag = spelled("input_shapes", "--input-shape")
        raise InputError(f"{where}: {flag} names {bad}, which are not inputs of the net; "
                         f"inputs: {sources}")

    wanted = list(outputs) if outputs is not None else list(g.graph["outputs"])
    unusable: list[CaffeFxError] = []  # outputs that cannot be: said with the rest
    if not wanted and outputs is None:
        try:
            wanted = _swallowed(g, where)
        except InputError as e:
            unusable.append(e)
    missing = [b for b in wanted if b not in blobs]
    if missing:
        what = spelled(f"outputs={missing} are",
                       f"--outputs {','.join(missing)} names {missing}, which are")
        unusable.append(InputError(f"{where}: {what} not blobs of the net (in this phase); "
                                   f"blobs: {list(blobs)}"))
        wanted = [b for b in wanted if b in blobs]
    # Without outputs=, every layer is set up (as Caffe does, so every blob gets its
    # shape); nodes nothing reads are dropped from the graph at the end.
    needed = set(g.nodes) if outputs is None else set()
    for b in wanted:
        producer = values[blobs[b]].producer
        needed |= {producer} | nx.ancestors(g, producer)
    for i in list(g.nodes):  # layers running user code run as in Caffe, read or not
        layer = g.nodes[i]["layer"]
        spec = lookup(layer.type)
        if spec is not None and spec.side_effects:
            needed |= {i} | nx.ancestors(g, i)
        elif spec is None and not layer.top:  # no output reaches it, yet Caffe sets it up:
            needed.add(i)  # an unknown type is refused, never dropped unseen

    early = support_problems([g.nodes[i]["layer"] for i in sorted(needed)], where,
                             read_problems, untrusted) + unusable
    for i in sorted(g.nodes):  # every layer's bottom and top counts, needed or not (as
        layer = g.nodes[i]["layer"]  # Caffe sets every layer up)
        spec = lookup(layer.type)
        if spec is not None and not is_source(layer):
            view = LayerView(layer.name, layer.type, tuple(layer.bottom), tuple(layer.top),
                             layer, 0, ())
            try:
                _check_counts(view, spec, len(g.nodes[i]["tops"]), where)
            except NetDefinitionError as e:
                early.append(e)
    if early:
        raise together(early, where)

    graph = fx.Graph()
    root = nn.Module()
    node_names, module_names = Namer(), Namer(for_module=True)
    env: dict[str, fx.Node] = {}
    meta: dict[str, torch.Tensor] = {}
    info = Lowering(inputs=[], outputs=wanted, blob_shapes={}, layers=[])
    modules: list[tuple[LayerView, CaffeModule]] = []
    totals: list[tuple[int, ...]] = []  # every blob and parameter, for the per-net limit

    # Every layer that can be set up is: the problems of all of them are raised together.
    problems: list[CaffeFxError] = []
    broken: set[str] = set()  # the values of layers that failed, or were not checked
    source_shapes = _all_source_shapes(g, given, where, problems)
    for i in sorted(g.nodes):
        attrs = g.nodes[i]
        layer: caffe_pb2.LayerParameter = attrs["layer"]
        if is_source(layer):
            if i not in source_shapes:
                broken.update(attrs["tops"])
                continue
            shapes = source_shapes[i]
            for vid, shape in zip(attrs["tops"], shapes):
                blob = values[vid].blob
                node = _placeholder(graph, node_names, blob)
                node.meta["shape"] = tuple(shape)
                env[vid] = node
                meta[vid] = torch.empty(shape, device="meta")
                totals.append(tuple(shape))
                info.inputs.append(blob)
            continue
        if i not in needed:
            continue
        if broken.intersection(attrs["bottoms"]):
            broken.update(attrs["tops"])  # unchecked: its bottoms have no shapes
            continue
        try:
            spec = lookup(layer.type)
            assert spec is not None
            view = LayerView(
                name=layer.name, type=layer.type,
                bottoms=tuple(layer.bottom), tops=tuple(layer.top), param=layer,
                phase=attrs["phase"],
                input_shapes=tuple(tuple(meta[v].shape) for v in attrs["bottoms"]),
            )
            who = f"{where}: layer '{layer.name}' ({layer.type})"
            try:
                with torch.device("meta"):
                    lowered = spec.fn(view)
            except CaffeFxError as e:
                raise with_message(e, f"{where}: {e}") from e
            except RuntimeError as e:  # torch refusing a blob shape (int64 overflow)
                raise ShapeError(f"{who}: cannot set up its blobs: {e}") from e
            if isinstance(lowered, CaffeModule):
                for attr in lowered.caffe_blobs:
                    blob = getattr(lowered, attr)
                    check_shape(blob.shape, f"{who}: blob '{attr}'")
                    totals.append(tuple(blob.shape))
            info.layers.append(layer.name)
            tops = attrs["tops"]
            if lowered is IDENTITY:
                for j, vid in enumerate(tops):
                    src = attrs["bottoms"][j if j < len(attrs["bottoms"]) else 0]
                    env[vid], meta[vid] = env[src], meta[src]
                continue
            args: list = [env[v] for v in attrs["bottoms"]]
            inputs: list = [meta[v] for v in attrs["bottoms"]]
            for j, down in enumerate(layer.propagate_down[:len(args)]):
                if not down:  # Net::Init: no diff for this bottom, whatever else needs one
                    args[j] = _detached(graph, args[j], node_names)
            if isinstance(lowered, Call) and lowered.packed:
                args, inputs = [args], [inputs]
            if isinstance(lowered, CaffeModule):
                mod_name = module_names(layer.name)
                root.add_module(mod_name, lowered)
                info.modules[layer.name] = mod_name
                modules.append((view, lowered))
                target, run = mod_name, lowered
                kind, kwargs = "call_module", {}
            elif isinstance(lowered, Call):
                target, run, kind = lowered.fn, lowered.fn, "call_function"
                kwargs = {k: _readable(v) for k, v in lowered.kwargs.items()}
            else:
                raise TypeError(f"{layer.type} lowering returned {type(lowered).__name__}")
            try:
                if inputs or kind == "call_module":
                    result = run(*inputs, **kwargs)
                else:  # DummyData: shapes only; the forward makes the values
                    with torch.device("meta"):
                        result = run(*inputs, **kwargs)
            except CaffeFxError as e:
                raise with_message(e, f"{where}: layer '{layer.name}' ({layer.type}): {e}") from e
            except (RuntimeError, ValueError, IndexError) as e:
                shapes = [list(meta[v].shape) for v in attrs["bottoms"]]
                raise ShapeError(
                    f"{where}: layer '{layer.name}' ({layer.type}) cannot run on bottoms of shape "
                    f"{shapes}: {e}") from e
            if not tops and not spec.side_effects:
                continue  # a layer without tops that has a node: kept by its _is_impure
            outs = [] if not tops else list(result) if isinstance(result, (tuple, list)) \
                else [result]
            if len(outs) != len(tops):
                raise TypeError(f"{layer.type} lowering gave {len(outs)} outputs for {len(tops)} tops")
            single = len(tops) == 1
            name = node_names(_value_name(values[tops[0]], layer.name) if single else layer.name)
            node = graph.create_node(kind, target, tuple(args), kwargs, name=name)
            _check_name(node, name)
            node.meta["caffe_layer"] = layer.name
            for j, vid in enumerate(tops):
                if single:
                    out = node
                else:
                    want = node_names(_value_name(values[vid], layer.name))
                    out = graph.create_node("call_function", operator.getitem, (node, j), name=want)
                    _check_name(out, want)
                out.meta["caffe_blob"] = values[vid].blob
                out.meta["shape"] = check_shape(tuple(outs[j].shape),
                                                f"{who}: top '{values[vid].blob}'")
                totals.append(out.meta["shape"])
                env[vid], meta[vid] = out, outs[j]
        except CaffeFxError as e:  # reported with the net's other problems
            problems.append(e)
            broken.update(attrs["tops"])

    if problems:
        raise together(problems, where)
    check_net_total(totals, where)
    if any(getattr(m, "nhwc", False) for _, m in modules):
        result_nodes = {b: _contiguous(graph, env[blobs[b]], meta[blobs[b]], node_names)
                        for b in wanted}
    else:
        result_nodes = {b: env[blobs[b]] for b in wanted}
    graph.output(result_nodes)
    for vid, node in env.items():
        info.value_nodes[vid] = node.name
    for b, vid in blobs.items():
        if vid in meta:
            info.blob_shapes[b] = tuple(meta[vid].shape)
    info.param_specs = _param_specs(modules, info.modules, where)
    gm = fx.GraphModule(root, graph, class_name=_class_name(where))
    gm.graph.eliminate_dead_code()
    _relu_in_place(gm)
    gm.recompile()
    gm.meta["caffe"] = info
    return Built(gm, info, tuple(modules))


def _param_specs(modules: Sequence[tuple[LayerView, CaffeModule]], names: Mapping[str, str],
                 where: str) -> dict[str, ParamSpecInfo]:
    """Net::AppendParam over every layer blob: the first blob of a ParamSpec name owns it;
    a sharer's lr_mult/decay_mult fill the owner's where it left them unset, and must
    equal them where both are set."""
    specs: dict[str, ParamSpecInfo] = {}
    owners: dict[str, str] = {}  # ParamSpec name -> qualified name of the owning blob
    is_set: dict[str, dict[str, bool]] = {}  # Caffe's has_params_lr_/has_params_decay_
    for view, module in modules:
        for k, attr in enumerate(module.caffe_blobs):
            qualified = f"{names[view.name]}.{attr}"
            spec = view.param.param[k] if k < len(view.param.param) else caffe_pb2.ParamSpec()
            values = {"lr_mult": spec.lr_mult, "decay_mult": spec.decay_mult}
            if k >= len(view.param.param) and view.type == "BatchNorm":
                values["lr_mult"] = 0.0  # BatchNormLayer::LayerSetUp masks its statistics
            if not spec.name or spec.name not in owners:
                if spec.name:
                    owners[spec.name] = qualified
                is_set[qualified] = {f: spec.HasField(f) for f in values}
                specs[qualified] = ParamSpecInfo(qualified, view.name, k, values["lr_mult"],
                                                 values["decay_mult"], spec.name)
                continue
            owner = specs[owners[spec.name]]
            merged = {"lr_mult": owner.lr_mult, "decay_mult": owner.decay_mult}
            for fld in values:
                if not spec.HasField(fld):
                    continue
                if not is_set[owner.name][fld]:
                    is_set[owner.name][fld] = True
                    merged[fld] = values[fld]
                elif merged[fld] != values[fld]:
                    raise NetDefinitionError(
                        f"{where}: layer '{view.name}': shared param '{spec.name}' has "
                        f"mismatched {fld}: {values[fld]} here, {merged[fld]} in layer "
                        f"'{owner.layer}'; they must be equal")
            specs[owner.name] = ParamSpecInfo(owner.name, owner.layer, owner.blob_index,
                                              merged["lr_mult"], merged["decay_mult"],
                                              owner.share)
            specs[qualified] = ParamSpecInfo(qualified, view.name, k, values["lr_mult"],
                                             values["decay_mult"], spec.name, owner.name)
    return specs


def support_problems(layers: Sequence[caffe_pb2.LayerParameter], where: str,
                     read_problems: Sequence[str] = (), untrusted: str | None = None
                     ) -> list[CaffeFxError]:
    """What stops `layers` from lowering before any is set up, one error per kind: fields
    no schema knows (`read_problems`), types caffe_fx cannot lower, fields a layer does
    not read, Python layers not trusted (`untrusted`, the refusal).  Fields a layer type
    ignores (as Caffe ignores them) are warned about here, all in one warning."""
    layers = [layer for layer in layers if not is_source(layer)]
    unknown = [(layer.name, layer.type) for layer in layers if lookup(layer.type) is None]
    fields: list[str] = []
    ignored: list[str] = []
    for layer in layers:
        spec = lookup(layer.type)
        if spec is not None and layer.type != "Python":
            view = LayerView(layer.name, layer.type, tuple(layer.bottom), tuple(layer.top),
                             layer, 0, ())
            fields += field_problems(view, spec)
            ignored += ignored_fields(view, spec)
    if ignored:
        warnings.warn(IgnoredFieldWarning(
            f"{where}: {len(ignored)} field(s) set where the layer type does not read them; "
            "ignored, as Caffe ignores them:\n" + "\n".join(f"  {x}" for x in ignored)),
            stacklevel=2)
    problems: list[CaffeFxError] = []
    if read_problems:
        problems.append(ProtoParseError(unknown_fields_message(where, list(read_problems))))
    if unknown:
        problems.append(UnsupportedLayerError(unknown, where))
    if fields:
        problems.append(UnsupportedFieldError(f"{where}: " + f"\n{where}: ".join(fields)))
    if untrusted is not None:
        problems.append(UnsupportedFieldError(untrusted))
    return problems


def _swallowed(g: nx.DiGraph, where: str) -> list[str]:
    """A net whose every blob is consumed (by Silence, as colorization's is) would compile
    to a module returning nothing: it returns what Silence swallows instead, or, without
    Silence, refuses saying to name the outputs."""
    values: dict[str, Value] = g.graph["values"]
    out: list[str] = []
    for i in sorted(g.nodes):
        if g.nodes[i]["layer"].type == "Silence":
            for vid in g.nodes[i]["bottoms"]:
                while g.nodes[values[vid].producer]["layer"].type == "Split":
                    vid = g.nodes[values[vid].producer]["bottoms"][0]  # the split blob's source
                blob = values[vid].blob
                if blob is not None and blob not in out:
                    out.append(blob)
    if not out:
        raise InputError(
            f"{where}: the net has no outputs (every blob is read by a layer, and no layer "
            f"leaves a top unread); {spelled('pass outputs=[...]', 'pass --outputs B1,B2')} "
            "naming the blobs to return; blobs: "
            f"{list(g.graph['blobs'])}")
    return out


def _contiguous(graph: fx.Graph, node: fx.Node, value: torch.Tensor, names: Namer) -> fx.Node:
    """4-D outputs may be NHWC inside (see CaffeConv); users get plain contiguous tensors."""
    if value.dim() != 4 or node.op == "placeholder":
        return node
    name = names(f"{node.name}_out")
    out = graph.create_node("call_method", "contiguous", (node,), name=name)
    _check_name(out, name)
    out.meta["caffe_blob"] = node.meta.get("caffe_blob")
    out.meta["shape"] = tuple(value.shape)
    return out


# The layer modules whose backward never reads their own top, so that a ReLU after them
# may overwrite it: not user layers, Python layers or custom-backward ones that save it.
_TOP_FREE_MODULES = frozenset(f"caffe_fx.lowering.layers.{m}" for m in (
    "convolution", "inner_product", "scale_bias", "batch_norm", "embed", "ssd", "segnet"))


def _relu_in_place(gm: fx.GraphModule) -> None:
    """ReLU overwrites its bottom, as Caffe's in-place ReLU does, when nothing else reads
    it and its producer's backward does not need its own output (a convolution, inner
    product, scale, bias, batch norm or embed module, a sum or a concat): saves one pass
    over memory per activation."""
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not torch.relu:
            continue
        src = node.args[0]
        if not isinstance(src, fx.Node) or len(src.users) != 1:
            continue
        if src.op == "call_module":
            free = type(gm.get_submodule(str(src.target))).__module__ in _TOP_FREE_MODULES
        else:
            free = src.op == "call_function" and src.target in (torch.add, eltwise_add,
                                                                caffe_concat)
        if free:
            node.target = torch.relu_


def _detached(graph: fx.Graph, node: fx.Node, names: Namer) -> fx.Node:
    """`propagate_down: false`: the layer reads its bottom without a gradient path."""
    name = names(f"{node.name}_detached")
    out = graph.create_node("call_method", "detach", (node,), name=name)
    _check_name(out, name)
    return out


def _readable(value: object) -> object:
    """Prototxt floats are float32: print them as their shortest float32 spelling
    (alpha = 0.0001, not 9.999999747378752e-05).  Both round to the same float32, which
    is what the torch ops compute with."""
    if isinstance(value, float) and math.isfinite(value):
        short = float(str(np.float32(value)))
        if np.float32(short) == np.float32(value):
            return short
    if isinstance(value, (list, tuple)):
        return type(value)(_readable(v) for v in value)
    return value


def _placeholder(graph: fx.Graph, namer: Namer, blob: str) -> fx.Node:
    name = namer(blob)
    # graph.placeholder() would snake_case the name ("Data" -> "data"); keep it exact.
    node = graph.create_node("placeholder", name, name=name)
    _check_name(node, name)
    node.meta["caffe_blob"] = blob
    return node


def _value_name(v: Value, layer_name: str) -> str:
    """Nodes are named after their blob; an in-place writer after its layer."""
    if v.blob is None:
        return f"{layer_name}_top{v.top_index}"
    return layer_name if v.inplace else v.blob


def _check_name(node: fx.Node, wanted: str) -> None:
    # Our names are unique and legal, so torch.fx renaming one would be a naming bug.
    if node.name != wanted:
        raise RuntimeError(f"torch.fx renamed node {wanted!r} to {node.name!r}")


def _check_counts(view: LayerView, spec: LayerSpec, ntops: int, where: str) -> None:
    def check(kind: str, n: int, lo: int, hi: int | None) -> None:
        if n < lo or (hi is not None and n > hi):
            allowed = f"exactly {lo}" if lo == hi else (f"at least {lo}" if hi is None
                                                        else f"{lo} to {hi}")
            raise NetDefinitionError(
                f"{where}: layer '{view.name}' ({view.type}) has {n} {kind}; allowed: {allowed}")

    check("bottoms", len(view.bottoms), spec.min_bottoms, spec.max_bottoms)
    check("tops", ntops, spec.min_tops, spec.max_tops)
    if not spec.inplace_ok:
        for j, (b, t) in enumerate(zip(view.bottoms, view.tops)):
            if b == t:
                raise NetDefinitionError(
                    f"{where}: layer '{view.name}' ({view.type}) cannot work in place "
                    f"(top[{j}] = bottom[{j}] = '{t}'); give the top another name")


def _class_name(where: str) -> str:
    return "CaffeNet"
