"""`caffe_fx.compile`: prototxt (+ caffemodel) -> torch.fx.GraphModule.

The pipeline, in order: read and upgrade (frontend/read.py) -> filter_phase ->
insert_splits -> build the layer DAG, resolving in-place tops (frontend/graph.py) ->
lower, inferring every blob's shape on meta tensors (lowering/builder.py) -> fill blobs
from the caffemodel (Net::CopyTrainedLayersFrom in src/caffe/net.cpp) or Caffe's fillers.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Union

import numpy as np
import torch
from torch import fx

from .errors import InputError, UnsupportedFieldError, WeightsError
from .frontend.graph import build_graph
from .frontend.read import NetSource, StoredBlob, describe, read_net, read_weights
from .lowering.builder import build
from .lowering.fillers import fill
from .lowering.registry import CaffeModule, LayerView
from .passes.filter_phase import filter_phase
from .passes.insert_splits import insert_splits
from .proto import caffe_pb2

WeightsSource = Union[str, os.PathLike, Mapping[str, Sequence[np.ndarray]], None]


def net_state(phase: str | int, level: int = 0, stages: Sequence[str] = ()) -> caffe_pb2.NetState:
    state = caffe_pb2.NetState()
    if isinstance(phase, str):
        names = {"train": caffe_pb2.TRAIN, "test": caffe_pb2.TEST}
        if phase.lower() not in names:
            raise InputError(f"phase = {phase!r} is not a phase; allowed: 'train', 'test'")
        state.phase = names[phase.lower()]
    elif phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        state.phase = phase
    else:
        raise InputError(f"phase = {phase!r} is not a phase; allowed: 'train', 'test'")
    state.level = level
    state.stage.extend(stages)
    return state


def compile(  # noqa: A001  (the public name the design asks for)
    prototxt: NetSource,
    weights: WeightsSource = None,
    *,
    phase: Literal["train", "test"] | int = "test",
    level: int = 0,
    stages: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    caffe_proto: str | os.PathLike | None = None,
    trust_python_layers: bool = False,
) -> fx.GraphModule:
    """Compiles a Caffe net to a torch.fx.GraphModule that computes what Caffe computes.

    Args:
        prototxt: a path to a .prototxt, prototxt text, or a `caffe_pb2.NetParameter`.
            Legacy V0/V1 nets are upgraded as Caffe does.
        weights: a .caffemodel (binary, any legacy format) or .caffemodel.h5 path, or a
            mapping {layer name: [arrays]}.  Layers are matched by name; layers absent
            from the net are skipped.  Without weights, blobs get Caffe's fillers.
        phase, level, stages: the NetState used for include/exclude rules.
        outputs: blobs to return (default: the net's outputs, blobs no layer consumes);
            layers not needed for them are left out.
        input_shapes: shapes of input blobs, overriding Input layers and required for
            data layers (Data, ImageData, HDF5Data, ...), whose tops become inputs.
        caffe_proto: a fork's caffe.proto, for prototxts with fields BVLC lacks
            (compiled with grpcio-tools or protoc; a clear error says if neither is there).
        trust_python_layers: run the code of "Python" layers: python_param.module is
            imported from sys.path and its layer class set up, as pycaffe does.  Off by
            default, so that compiling a net never runs code it names.  Such a
            GraphModule runs eagerly; its Python layers cannot be scripted or exported.

    Returns:
        A GraphModule taking the input blobs as keyword (or positional, in Caffe's order)
        arguments and returning {blob name: tensor}.  `gm.meta["caffe"]` holds the
        input/output names and every blob's shape.
    """
    where = describe(prototxt)
    stored_weights = _read_weights_meanwhile(weights)  # the disk works while we build
    net = read_net(prototxt, caffe_proto)
    net = filter_phase(net, net_state(phase, level, stages), where)
    net = insert_splits(net, where)
    g = build_graph(net, where)
    with _python_layers(net, where, trust_python_layers):
        gm, _ = build(g, input_shapes=input_shapes, outputs=outputs)
    modules: list[tuple[LayerView, CaffeModule]] = gm.__dict__.pop("_caffe_modules")
    stored = stored_weights()
    for view, module in modules:
        blobs = stored.get(view.name) if stored is not None else None
        if type(module).to_empty is not torch.nn.Module.to_empty:
            module.to_empty(device="cpu")  # it restores state of its own (InfogainLoss's H)
        if blobs is not None:
            _copy_blobs(view, module, blobs, weights)
        _materialise(module)
        if blobs is None:
            for name, filler in zip(module.caffe_blobs, module.fillers):
                fill(getattr(module, name), filler, f"layer '{view.name}' ({view.type})")
    _share_params(modules, where)
    for _, module in modules:
        module.blobs_settled()
    gm.eval() if net.state.phase == caffe_pb2.TEST else gm.train()
    return gm


def _python_layers(net: caffe_pb2.NetParameter, where: str,
                   trust: bool) -> contextlib.AbstractContextManager[Any]:
    """Where the net has Python layers: refuses them unless trusted, else the context in
    which caffe_fx.pycaffe's "Python" lowering imports and sets them up."""
    python = [layer for layer in net.layer if layer.type == "Python"]
    if not python:
        return contextlib.nullcontext()
    if not trust:
        names = ", ".join(f"'{layer.name}' (python_param.module = "
                          f"'{layer.python_param.module}')" for layer in python)
        raise UnsupportedFieldError(
            f"{where}: Python layers {names} run user code, which compile() never does "
            "unless told: pass trust_python_layers=True, or use caffe_fx.pycaffe.Net "
            "(which imports them, as pycaffe does)")
    from .pycaffe import python_layer  # registers the "Python" type

    return python_layer.building({})


def _read_weights_meanwhile(weights: WeightsSource
                            ) -> Callable[[], dict[str, list[StoredBlob]] | None]:
    """Starts reading a caffemodel in a thread (file reads release the GIL) and returns
    the function that waits for it; its errors are raised there, after the net's."""
    if weights is None or isinstance(weights, Mapping):
        return lambda: _stored_weights(weights)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["stored"] = _stored_weights(weights)
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            box["error"] = e

    thread = threading.Thread(target=work, name="caffe_fx-read-weights", daemon=True)
    thread.start()

    def result() -> dict[str, list[StoredBlob]] | None:
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["stored"]

    return result


def _stored_weights(weights: WeightsSource) -> dict[str, list[StoredBlob]] | None:
    """Arrays the module may own: read_weights' views of its own buffer, or copies of
    the caller's arrays (never aliased, so training does not write into them)."""
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        return {k: [StoredBlob(np.array(a, dtype=np.float32, copy=True), False) for a in v]
                for k, v in weights.items()}
    return read_weights(weights)


def _shape_equals(stored: StoredBlob, target: tuple[int, ...]) -> bool:
    """Blob::ShapeEquals: a legacy 4-D blob matches a target of <= 4 axes right-aligned
    and padded with 1s (old InnerProduct weights (1,1,N,K), biases (1,1,1,N))."""
    shape = tuple(stored.array.shape)
    if stored.legacy:
        if len(target) > 4:
            return False
        return shape == (1,) * (4 - len(target)) + tuple(target)
    return shape == tuple(target)


@torch.no_grad()
def _copy_blobs(view: LayerView, module: CaffeModule, blobs: list[StoredBlob],
                source: WeightsSource) -> None:
    """Net::CopyTrainedLayersFrom: the module's blobs become the stored arrays
    themselves (still on the meta device, nothing was allocated for them)."""
    targets = module.blob_tensors()
    where = f"{source}: layer '{view.name}' ({view.type})"
    if len(blobs) != len(targets):
        raise WeightsError(
            f"{where}: the weights hold {len(blobs)} blobs, the layer has {len(targets)} "
            "(Incompatible number of blobs); rename the layer to skip its weights")
    for k, (blob, target) in enumerate(zip(blobs, targets)):
        if not _shape_equals(blob, tuple(target.shape)):
            raise WeightsError(
                f"{where}: blob {k} has shape {list(blob.array.shape)} in the weights but "
                f"{list(target.shape)} in the net (Cannot copy param {k} weights); rename "
                "the layer to skip its weights")
        tensor = torch.from_numpy(blob.array).view(target.shape)
        name = module.caffe_blobs[k]
        if isinstance(target, torch.nn.Parameter):
            module._parameters[name] = torch.nn.Parameter(tensor, target.requires_grad)
        else:
            module._buffers[name] = tensor


def _materialise(module: torch.nn.Module) -> None:
    """Module.to_empty(device="cpu") for the tensors still on the meta device only: the
    file-backed blobs are kept, nothing is allocated only to be overwritten."""
    for sub in module.modules():
        for name, p in sub._parameters.items():
            if p is not None and p.is_meta:
                sub._parameters[name] = torch.nn.Parameter(
                    torch.empty_like(p, device="cpu"), p.requires_grad)
        for name, b in sub._buffers.items():
            if b is not None and b.is_meta:
                sub._buffers[name] = torch.empty_like(b, device="cpu")


def _share_params(modules: list[tuple[LayerView, CaffeModule]], where: str) -> None:
    """ParamSpec names share blobs (Net::AppendParam): the first owner's tensor is used."""
    owners: dict[str, tuple[str, torch.Tensor]] = {}
    for view, module in modules:
        for k, spec in enumerate(view.param.param):
            if not spec.name or k >= len(module.caffe_blobs):
                continue
            attr = module.caffe_blobs[k]
            tensor = getattr(module, attr)
            if spec.name not in owners:
                owners[spec.name] = (view.name, tensor)
                continue
            owner_layer, owned = owners[spec.name]
            strict = spec.share_mode == caffe_pb2.ParamSpec.STRICT
            if (strict and owned.shape != tensor.shape) or owned.numel() != tensor.numel():
                raise WeightsError(
                    f"{where}: layer '{view.name}' shares param '{spec.name}' with layer "
                    f"'{owner_layer}' but their shapes differ: {list(tensor.shape)} vs "
                    f"{list(owned.shape)}")
            shared = owned if owned.shape == tensor.shape else owned.view(tensor.shape)
            if isinstance(tensor, torch.nn.Parameter):
                setattr(module, attr, shared if isinstance(shared, torch.nn.Parameter)
                        else torch.nn.Parameter(shared))
            else:
                module._buffers[attr] = shared
