"""`caffe.Net` on torch.fx: pycaffe's forward-side surface over a compiled GraphModule.

pycaffe facade.  Mirrors python/caffe/pycaffe.py (blobs, params, forward, forward_all,
...) and the Net bindings of python/caffe/_caffe.cpp over src/caffe/net.cpp (Init,
ForwardFromTo, Reshape, CopyTrainedLayersFrom, ShareTrainedLayersWith, ToProto).  The net
is compiled once per set of input shapes with every blob as an output; every blob keeps
one float32 NumPy storage that the next forward reads and writes, as Caffe's blobs do.
"""
from __future__ import annotations

import copy
import itertools
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import fx

from .. import compiler
from .._atomic import atomic_path
from ..errors import (
    BlobNameError,
    DeviceError,
    InputArrayError,
    InputError,
    ShapeError,
    WeightsError,
)
from ..frontend.graph import build_graph
from ..frontend.read import NetSource, describe, read_net
from ..lowering.builder import SOURCE_TYPES, Lowering, build
from ..lowering.fillers import fill
from ..lowering.registry import CaffeModule, LayerView, lookup, supported_layers
from ..passes.filter_phase import filter_phase
from ..passes.insert_splits import insert_splits
from ..proto import caffe_pb2
from ..weights_io import save_caffemodel
from . import python_layer
from .backward import (
    READS_BOTTOM,
    READS_DATA,
    REPLAYED,
    LayerTape,
    TapeInterpreter,
    layer_vjp,
    lrn_inplace_backward,
    neuron_backward,
    plan_backward,
    replayed_backward,
    run_layer,
    top_loss_weights,
)
from .blob import Blob

TRAIN: int = caffe_pb2.TRAIN
TEST: int = caffe_pb2.TEST

# Caffe::mode() and Caffe::SetDevice: process-wide, as in Caffe.
_MODE: dict[str, Any] = {"gpu": False, "device": 0}

# The name Net::AppendTop gives the top it creates for a loss layer written without one.
AUTOMATIC = "(automatic)"

# Layers whose tops share the bottom's data (Blob::ShareData in their Forward/Reshape).
_SHARING_TYPES = frozenset({"Split", "Flatten", "Reshape"})


def set_mode_cpu() -> None:
    _MODE["gpu"] = False


def set_mode_gpu() -> None:
    if not torch.cuda.is_available():
        raise DeviceError("set_mode_gpu(): torch.cuda is not available on this machine (no CUDA "
                          "device or a CPU-only torch build); use set_mode_cpu()")
    _MODE["gpu"] = True


def set_device(device_id: int) -> None:
    if torch.cuda.is_available() and not 0 <= device_id < torch.cuda.device_count():
        raise DeviceError(f"set_device({device_id}): allowed: 0 to "
                          f"{torch.cuda.device_count() - 1} (torch.cuda.device_count())")
    _MODE["device"] = int(device_id)


def set_random_seed(seed: int) -> None:
    """Caffe::set_random_seed: seeds the generator the fillers (and Dropout) draw from."""
    torch.manual_seed(seed)


def layer_type_list() -> list[str]:
    """The layer types a Net can hold, sorted as LayerRegistry::LayerTypeList gives them."""
    return sorted(set(supported_layers()) | SOURCE_TYPES)


def _name_automatic_tops(net: caffe_pb2.NetParameter
                         ) -> tuple[caffe_pb2.NetParameter, frozenset[str]]:
    """Net::Init gives a loss layer written without a top (LossLayer::AutoTopBlobs) an
    anonymous top "(automatic)": a blob with loss weight 1 that backward starts from, but no
    output.  Caffe names them all alike; from the second on they are "(automatic)#2", ..."""
    named = caffe_pb2.NetParameter()
    named.CopyFrom(net)
    names: list[str] = []
    for layer in named.layer:
        spec = lookup(layer.type)
        if spec is not None and spec.auto_top and not layer.top:
            names.append(AUTOMATIC if not names else f"{AUTOMATIC}#{len(names) + 1}")
            layer.top.append(names[-1])
    return named, frozenset(names)


def _memory_shapes(layer: caffe_pb2.LayerParameter) -> list[tuple[int, ...]]:
    p = layer.memory_data_param
    return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)]


def _device() -> torch.device:
    return torch.device("cuda", _MODE["device"]) if _MODE["gpu"] else torch.device("cpu")


class NamedDict(OrderedDict):
    """pycaffe's OrderedDicts; a missing name raises KeyError naming what exists."""

    def __init__(self, items: Any, what: str) -> None:
        super().__init__(items)
        self._what = what

    def __missing__(self, key: object) -> Any:
        raise BlobNameError(f"no {self._what} {key!r} in the net; {self._what}s: {list(self)}")

    def __reduce__(self) -> Any:
        return (type(self), (list(self.items()), self._what))


class NetLayer:
    """An entry of `net.layers`: Caffe's Layer as pycaffe shows it (`type`, `blobs`)."""

    def __init__(self, layer_type: str, blobs: list[Blob]) -> None:
        self.type = layer_type
        self.blobs = blobs

    def __repr__(self) -> str:
        return f"<caffe_fx.pycaffe layer type={self.type!r} blobs={len(self.blobs)}>"


class Net:
    """`caffe.Net(network_file, phase, level=0, stages=None, weights=None)`, or the
    legacy `caffe.Net(network_file, pretrained_file, phase)`."""

    def __init__(self, network_file: NetSource, *args: Any, phase: int | None = None,
                 level: int = 0, stages: Sequence[str] | None = None,
                 weights: str | os.PathLike | None = None) -> None:
        rest = list(args)
        if rest and isinstance(rest[0], (str, os.PathLike)):  # Net(file, weights, phase)
            if weights is not None:
                raise InputError("Net(): weights given both positionally and as weights=")
            weights = rest.pop(0)
        names = ["phase", "level", "stages", "weights"]
        if len(rest) > len(names):
            raise InputError(f"Net() takes at most 5 arguments; got {len(rest) + 1}")
        given = dict(zip(names, rest))
        phase = given.get("phase", phase)
        level = given.get("level", level)
        stages = given.get("stages", stages)
        weights = given.get("weights", weights)
        if phase is None:
            raise InputError("Net(network_file, phase, ...): phase is required; allowed: "
                             "caffe.TRAIN, caffe.TEST")
        where = describe(network_file)
        self._where = where
        net = read_net(network_file)
        # Net::Net overrides the file's phase and level and appends the stages.
        state = caffe_pb2.NetState()
        state.CopyFrom(compiler.net_state(phase, level, ()))
        state.stage.extend(net.state.stage)
        state.stage.extend(stages or ())
        net = insert_splits(filter_phase(net, state, where), where)
        self._proto = net  # what save() writes, as Net::ToProto does
        net, self._automatic = _name_automatic_tops(net)
        self._net = net
        self._graph = build_graph(net, where)
        self._sources = [top for layer in net.layer if layer.type in SOURCE_TYPES
                         for top in layer.top]
        self._gms: dict[tuple[tuple[int, ...], ...], fx.GraphModule] = {}
        self._device_gms: dict[int, fx.GraphModule] = {}
        self._tensors: dict[str, list[torch.Tensor]] = {}  # layer -> its blobs' tensors
        self._python_layers: dict[str, python_layer.PythonLayerModule] = {}

        gm, modules = self._build(None)
        for view, module in modules:
            if type(module).to_empty is not torch.nn.Module.to_empty:
                module.to_empty(device="cpu")
            compiler._materialise(module)
            for name, filler in zip(module.caffe_blobs, module.fillers):
                fill(getattr(module, name), filler, f"layer '{view.name}' ({view.type})")
        compiler._share_params(modules, where)
        for view, module in modules:
            self._tensors[view.name] = module.blob_tensors()
        info: Lowering = gm.meta["caffe"]
        self._gms[self._key_of(info)] = gm
        self._gm = gm
        self.blobs = NamedDict(((b, Blob(np.zeros(info.blob_shapes[b], np.float32)))
                                for b in self._graph.graph["blobs"]), "blob")
        self._link_shared()
        self._make_params()
        self._plan = plan_backward(net, {k: len(v) for k, v in self._tensors.items()})
        self._tape: dict[str, LayerTape] = {}
        self._memory: list[Any] | None = None  # MemoryData: [data, labels, position]
        # Layer::SetLossWeights: a loss top's diff holds its loss weight, the seed of backward.
        for layer in net.layer:
            for top, w in zip(layer.top, top_loss_weights(layer)):
                if w:
                    self.blobs[top].diff[...] = w
        if weights is not None:
            self.copy_from(weights)

    # -- compiling -------------------------------------------------------------------

    def _key_of(self, info: Lowering) -> tuple[tuple[int, ...], ...]:
        return tuple(info.blob_shapes[s] for s in self._sources)

    def _build(self, shapes: Mapping[str, Sequence[int]] | None
               ) -> tuple[fx.GraphModule, list[tuple[LayerView, CaffeModule]]]:
        if shapes is None:  # MemoryDataLayer::DataLayerSetUp: (batch, C, H, W) and (batch,)
            shapes = {top: shape for layer in self._net.layer if layer.type == "MemoryData"
                      for top, shape in zip(layer.top, _memory_shapes(layer))} or None
        with python_layer.building(self._python_layers):
            gm, _ = build(self._graph, input_shapes=shapes,
                          outputs=list(self._graph.graph["blobs"]))
        modules = gm.__dict__.pop("_caffe_modules")
        if self._net.state.phase == caffe_pb2.TEST:
            gm.eval()
        else:
            gm.train()
        return gm, modules

    def _adopt(self, modules: list[tuple[LayerView, CaffeModule]]) -> None:
        """A recompiled net's modules use the net's own blob tensors (weights are kept
        across reshapes, as Caffe keeps a layer's blobs when its bottoms change shape)."""
        for view, module in modules:
            if type(module).to_empty is not torch.nn.Module.to_empty:
                module.to_empty(device="cpu")
            for k, (name, tensor) in enumerate(zip(module.caffe_blobs, self._tensors[view.name])):
                want = tuple(getattr(module, name).shape)
                if want != tuple(tensor.shape):
                    raise ShapeError(
                        f"{self._where}: layer '{view.name}' ({view.type}): after reshaping the "
                        f"inputs, blob {k} would need shape {list(want)} but the layer's blob has "
                        f"{list(tensor.shape)} (the layer's parameters cannot change shape)")
                if name in module._parameters:
                    module._parameters[name] = tensor  # type: ignore[assignment]  # a Parameter
                else:
                    module._buffers[name] = tensor
            compiler._materialise(module)

    def _current_key(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.blobs[s].shape for s in self._sources)

    def reshape(self) -> None:
        """Net::Reshape: re-infers every blob's shape from the input blobs' shapes."""
        key = self._current_key()
        if key not in self._gms:
            gm, modules = self._build(dict(zip(self._sources, key)))
            self._adopt(modules)
            self._gms[key] = gm
        self._gm = self._gms[key]
        info: Lowering = self._gm.meta["caffe"]
        for name, blob in self.blobs.items():
            if name not in self._sources and blob.shape != info.blob_shapes[name]:
                blob._data = np.zeros(info.blob_shapes[name], np.float32)
                blob._diff = None
        self._link_shared()

    def _link_shared(self) -> None:
        """Split, Flatten and Reshape tops share their bottom's memory in Caffe
        (Blob::ShareData), so they always show the bottom's current values."""
        for layer in self._net.layer:
            if layer.type in _SHARING_TYPES and layer.bottom:
                bottom = self.blobs[layer.bottom[0]]
                for top in layer.top:
                    blob = self.blobs[top]
                    if blob is not bottom and blob.count == bottom.count:
                        blob._data = bottom._data.reshape(blob.shape)

    # -- properties ------------------------------------------------------------------

    def _make_params(self) -> None:
        blobs = {name: [Blob.of_tensor(t) for t in tensors]
                 for name, tensors in self._tensors.items()}
        own = python_layer.own_layers(self._python_layers, self._tensors)
        self.layers = [own[layer.name] if layer.name in own  # pycaffe shows the object
                       else NetLayer(layer.type, blobs.get(layer.name, []))
                       for layer in self._net.layer]
        self.params = NamedDict(((name, lr.blobs) for name, lr in zip(self._layer_names,
                                                                       self.layers)
                                 if lr.blobs), "layer with parameters")

    @property
    def _layer_names(self) -> list[str]:
        return [layer.name for layer in self._net.layer]

    @property
    def layer_dict(self) -> NamedDict:
        return NamedDict(zip(self._layer_names, self.layers), "layer")

    @property
    def inputs(self) -> list[str]:
        return list(self._graph.graph["inputs"])

    @property
    def outputs(self) -> list[str]:
        return [b for b in self._graph.graph["outputs"] if b not in self._automatic]

    @property
    def top_names(self) -> NamedDict:
        return NamedDict(((layer.name, list(layer.top)) for layer in self._net.layer), "layer")

    @property
    def bottom_names(self) -> NamedDict:
        return NamedDict(((layer.name, list(layer.bottom)) for layer in self._net.layer),
                         "layer")

    @property
    def blob_loss_weights(self) -> NamedDict:
        # Net::Init: every layer writing a blob (in place too) sets its loss weight.
        weights = dict.fromkeys(self.blobs, 0.0)
        for layer in self._net.layer:
            spec = lookup(layer.type)
            for j, top in enumerate(layer.top):
                if layer.loss_weight:
                    weights[top] = float(layer.loss_weight[j]) if j < len(layer.loss_weight) else 0.0
                else:
                    weights[top] = 1.0 if spec is not None and spec.is_loss and j == 0 else 0.0
        return NamedDict(weights.items(), "blob")

    # -- forward ---------------------------------------------------------------------

    def _layer_index(self, name: str, what: str) -> int:
        names = self._layer_names
        if name not in names:
            raise InputError(f"{what}='{name}' is not a layer of the net; layers: {names}")
        return names.index(name)

    def _runner(self) -> fx.GraphModule:
        """The GraphModule to run: the net's own on CPU; in GPU mode a CUDA copy whose
        blobs are refreshed from the NumPy-visible CPU tensors before every forward."""
        if not _MODE["gpu"]:
            return self._gm
        device = _device()
        gm = self._device_gms.get(id(self._gm))
        if gm is None:
            gm = copy.deepcopy(self._gm).to(device)
            self._device_gms[id(self._gm)] = gm
        info: Lowering = self._gm.meta["caffe"]
        with torch.no_grad():
            for layer, sub in info.modules.items():
                module = cast(CaffeModule, gm.get_submodule(sub))
                for name, tensor in zip(module.caffe_blobs, self._tensors[layer]):
                    getattr(module, name).copy_(tensor, non_blocking=True)
        return gm

    def forward(self, blobs: Sequence[str] | None = None, start: str | None = None,
                end: str | None = None, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        """pycaffe's Net.forward: sets the input blobs from kwargs (all of them or none),
        runs layers start..end (names, inclusive) and returns {blob: data} for the
        outputs (or the tops of `end`) plus `blobs`."""
        blobs = list(blobs or [])
        for b in blobs:
            self.blobs[b]
        start_ind = self._layer_index(start, "start") if start is not None else 0
        if end is not None:
            end_ind = self._layer_index(end, "end")
            outputs = set(self.top_names[end] + blobs)
        else:
            end_ind = len(self.layers) - 1
            outputs = set(self.outputs + blobs)
        if kwargs:
            if set(kwargs) != set(self.inputs):
                raise InputError(
                    f"forward(): input blob arguments {sorted(kwargs)} do not match the net's "
                    f"inputs {self.inputs} (give all of them or none)")
            for name, value in kwargs.items():
                value = np.asarray(value)
                target = self.blobs[name]
                if value.ndim == 0 or value.shape[0] != target.shape[0]:
                    raise InputError(
                        f"forward(): input '{name}' has shape {list(value.shape)} but the blob "
                        f"has batch size {target.shape[0]} (shape {list(target.shape)}); "
                        f"reshape the blob first: net.blobs['{name}'].reshape(...)")
                try:
                    target.data[...] = value
                except ValueError as e:
                    raise ShapeError(
                        f"forward(): input '{name}' of shape {list(value.shape)} does not fit "
                        f"the blob of shape {list(target.shape)}: {e}") from e
        if self._memory is not None and start_ind == 0:
            self._feed_memory()
        if self._current_key() != self._key_of(self._gm.meta["caffe"]):
            self.reshape()  # Layer::Forward reshapes first, so forward() follows new inputs
        with torch.no_grad():
            if start_ind == 0 and end_ind == len(self.layers) - 1:
                self._forward_all_layers()
            else:
                self._forward_from_to(start_ind, end_ind)
        return {out: self.blobs[out].data for out in outputs}

    def _tensor(self, name: str, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(self.blobs[name].data).to(device)

    def _store(self, name: str, value: torch.Tensor) -> None:
        blob = self.blobs[name]
        out = value.detach().to("cpu", torch.float32).numpy()
        if blob.shape != tuple(out.shape):
            blob._data = np.zeros(out.shape, np.float32)
            self._link_shared()
        blob._data[...] = out

    def _forward_all_layers(self) -> None:
        gm = self._runner()
        device = _device()
        feeds = {s: self._tensor(s, device) for s in self._sources}
        if self._plan.any:  # tape the layers that a later backward() differentiates
            self._tape = {}
            # The tape keeps the layers' inputs as they were (Caffe's layers that need
            # them keep copies): not views of blobs that an in-place layer may overwrite.
            feeds = {s: t.clone() for s, t in feeds.items()}
            results = TapeInterpreter(gm, self._tape).run(
                *(feeds[n.meta["caffe_blob"]] for n in gm.graph.nodes if n.op == "placeholder"))
        else:
            results = gm(**feeds)
        for name, value in results.items():
            if name not in self._sources or value is not feeds[name]:  # in place on an input
                self._store(name, value)

    def _forward_from_to(self, start: int, end: int) -> None:
        """Net::ForwardFromTo: layer by layer, each reading and writing the blobs."""
        gm = self._runner()
        device = _device()
        nodes = {n.meta["caffe_layer"]: n for n in gm.graph.nodes if "caffe_layer" in n.meta}
        for layer in list(self._net.layer)[start:end + 1]:
            if layer.type in SOURCE_TYPES:
                continue  # data layers read files caffe_fx does not read: blobs stay as set
            node = nodes.get(layer.name)
            if node is None:  # IDENTITY (Split, TEST Dropout) or a layer without tops
                for j, top in enumerate(layer.top):
                    bottom = layer.bottom[j if j < len(layer.bottom) else 0]
                    if top != bottom:
                        self._store(top, self._tensor(bottom, device))
                continue
            bottoms = [self._tensor(b, device) for b in layer.bottom]
            if self._plan.any:  # as in _forward_all_layers: the tape holds its own copies
                bottoms = [t.clone() for t in bottoms]
            args: tuple = (bottoms,) if node.args and isinstance(node.args[0], (list, tuple)) \
                else tuple(bottoms)
            if self._plan.any:
                module = gm.get_submodule(node.target) if node.op == "call_module" else None
                result = run_layer(node, module, args, dict(node.kwargs), self._tape)
            elif node.op == "call_module":
                result = gm.get_submodule(node.target)(*args, **node.kwargs)
            else:
                fn = torch.relu if node.target is torch.relu_ else node.target
                result = fn(*args, **node.kwargs)
            outs = list(result) if isinstance(result, (tuple, list)) else [result]
            for top, value in zip(layer.top, outs):
                self._store(top, value)

    def _batch(self, blobs: Mapping[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """pycaffe's Net._batch: batch-size slices, the last one zero-padded."""
        num = len(next(iter(blobs.values())))
        batch_size = next(iter(self.blobs.values())).shape[0]
        remainder = num % batch_size
        for b in range(num // batch_size):
            i = b * batch_size
            yield {name: blobs[name][i:i + batch_size] for name in blobs}
        if remainder > 0:
            padded = {}
            for name in blobs:
                padding = np.zeros((batch_size - remainder,) + blobs[name].shape[1:])
                padded[name] = np.concatenate([blobs[name][-remainder:], padding])
            yield padded

    def forward_all(self, blobs: Sequence[str] | None = None,
                    **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        """pycaffe's Net.forward_all: forward in batches, outputs concatenated, padding cut."""
        all_outs: dict[str, Any] = {out: [] for out in set(self.outputs + list(blobs or []))}
        for batch in self._batch(kwargs):
            outs = self.forward(blobs=blobs, **batch)  # type: ignore[arg-type]
            for out, out_blob in outs.items():
                all_outs[out].extend(out_blob.copy())
        arrays = {out: np.asarray(values) for out, values in all_outs.items()}
        pad = len(next(iter(arrays.values()))) - len(next(iter(kwargs.values())))
        if pad:
            arrays = {out: value[:-pad] for out, value in arrays.items()}
        return arrays

    # -- weights ---------------------------------------------------------------------

    @torch.no_grad()
    def copy_from(self, filename: str | os.PathLike) -> None:
        """Net::CopyTrainedLayersFrom (binary or HDF5): layers matched by name; layers the
        net lacks are skipped; the blobs are overwritten in place."""
        stored = compiler._stored_weights(filename)
        assert stored is not None
        types = {layer.name: layer.type for layer in self._net.layer}
        for name, blobs in stored.items():
            if name not in types:
                continue
            targets = self._tensors.get(name, [])
            where = f"{filename}: layer '{name}' ({types[name]})"
            if len(blobs) != len(targets):
                raise WeightsError(
                    f"{where}: the weights hold {len(blobs)} blobs, the layer has "
                    f"{len(targets)} (Incompatible number of blobs)")
            for k, (blob, target) in enumerate(zip(blobs, targets)):
                if not compiler._shape_equals(blob, tuple(target.shape)):
                    raise WeightsError(
                        f"{where}: blob {k} has shape {list(blob.array.shape)} in the weights "
                        f"but {list(target.shape)} in the net (Cannot copy param {k} weights)")
                target.copy_(torch.from_numpy(np.asarray(blob.array)).view(target.shape))

    def share_with(self, other: Net) -> None:
        """Net::ShareTrainedLayersWith: layers of the same name use `other`'s blobs."""
        for name, tensors in other._tensors.items():
            if name not in self._tensors:
                continue
            mine = self._tensors[name]
            if len(mine) != len(tensors):
                raise WeightsError(f"share_with: layer '{name}' has {len(mine)} blobs here and "
                                   f"{len(tensors)} in the other net (Incompatible number of blobs)")
            for k, (a, b) in enumerate(zip(mine, tensors)):
                if a.shape != b.shape:
                    raise WeightsError(
                        f"share_with: layer '{name}' blob {k} has shape {list(a.shape)} here and "
                        f"{list(b.shape)} in the other net (Cannot share param {k} weights)")
            self._tensors[name] = list(tensors)
        for gm in self._gms.values():
            info: Lowering = gm.meta["caffe"]
            for layer, sub in info.modules.items():
                module = cast(CaffeModule, gm.get_submodule(sub))
                for attr, tensor in zip(module.caffe_blobs, self._tensors[layer]):
                    if attr in module._parameters:
                        module._parameters[attr] = tensor  # type: ignore[assignment]
                    else:
                        module._buffers[attr] = tensor
        self._device_gms.clear()
        self._make_params()

    def save(self, filename: str | os.PathLike) -> None:
        """Net::ToProto + WriteProtoToBinaryFile: the whole net with its blobs (replaces
        an existing file, as Caffe does)."""
        save_caffemodel(filename, {name: list(t) for name, t in self._tensors.items()},
                        self._proto, force=True)

    def save_hdf5(self, filename: str | os.PathLike) -> None:
        """Net::ToHDF5: a group /data/<layer> per layer holding dataset <i> for each blob
        the layer owns (a param shared from another layer is written by its owner only);
        replaces an existing file, as Caffe does."""
        import h5py

        seen: set[int] = set()
        with atomic_path(filename, force=True) as tmp, h5py.File(tmp, "w") as h5:
            data = h5.create_group("data")
            for layer in self._net.layer:
                group = data.create_group(layer.name)
                for i, tensor in enumerate(self._tensors.get(layer.name, [])):
                    if id(tensor) in seen:
                        continue
                    seen.add(id(tensor))
                    group.create_dataset(str(i), data=tensor.detach().cpu().numpy())

    @torch.no_grad()
    def load_hdf5(self, filename: str | os.PathLike) -> None:
        """Net::CopyTrainedLayersFromHDF5: layers matched by name, shapes must match
        exactly; a dataset may be missing only for a param shared from another layer."""
        import h5py

        owners: dict[int, str] = {}
        for layer in self._net.layer:
            for tensor in self._tensors.get(layer.name, []):
                owners.setdefault(id(tensor), layer.name)
        try:
            h5 = h5py.File(filename, "r")
        except OSError as e:
            raise WeightsError(f"{filename}: cannot open the HDF5 weights file: {e}") from e
        with h5:
            if "data" not in h5:
                raise WeightsError(f"{filename}: no /data group (not an HDF5 caffemodel)")
            data = h5["data"]
            for layer in self._net.layer:
                if layer.name not in data:
                    continue
                group, targets = data[layer.name], self._tensors.get(layer.name, [])
                where = f"{filename}: layer '{layer.name}' ({layer.type})"
                if len(group) > len(targets):
                    raise WeightsError(f"{where}: the file holds {len(group)} blobs, the layer "
                                       f"has {len(targets)} (Incompatible number of blobs)")
                for j, target in enumerate(targets):
                    if str(j) not in group:
                        if owners[id(target)] != layer.name:
                            continue  # shared from another layer: loaded with its owner
                        raise WeightsError(f"{where}: no dataset /data/{layer.name}/{j} "
                                           "(Incompatible number of blobs)")
                    array = np.asarray(group[str(j)], dtype=np.float32)
                    if array.shape != tuple(target.shape):
                        raise WeightsError(
                            f"{where}: blob {j} has shape {list(array.shape)} in the file but "
                            f"{list(target.shape)} in the net (Cannot load blob from hdf5; "
                            "shape mismatch)")
                    target.copy_(torch.from_numpy(array))

    def set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """pycaffe's set_input_arrays over MemoryDataLayer::Reset: the first layer must be
        MemoryData; float32 C-contiguous 4-D arrays (1-D labels become (n, 1, 1, 1)), n a
        multiple of the batch size.  The arrays are kept, not copied: each forward() takes
        the next batch, wrapping around."""
        if labels.ndim == 1:
            labels = np.ascontiguousarray(labels[:, np.newaxis, np.newaxis, np.newaxis])
        first = self._net.layer[0] if self._net.layer else None
        if first is None or first.type != "MemoryData":
            raise InputArrayError(
                "set_input_arrays may only be called if the first layer is a MemoryDataLayer; "
                f"the first layer of {self._where} is "
                + (f"'{first.name}' ({first.type})" if first is not None else "absent"))
        p = first.memory_data_param
        for arr, what, chw in ((data, "data array", (p.channels, p.height, p.width)),
                               (labels, "labels array", (1, 1, 1))):
            if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous:
                raise InputArrayError(f"set_input_arrays(): {what} must be C contiguous")
            if arr.ndim != 4:
                raise InputArrayError(f"set_input_arrays(): {what} must be 4-d; got shape "
                                      f"{list(arr.shape)}")
            if arr.dtype != np.float32:
                raise InputArrayError(f"set_input_arrays(): {what} must be float32; got "
                                      f"{arr.dtype}")
            for axis, (want, name) in enumerate(zip(chw, ("channels", "height", "width"))):
                if arr.shape[axis + 1] != want:
                    raise InputArrayError(
                        f"set_input_arrays(): {what} has wrong number of {name}: "
                        f"{arr.shape[axis + 1]}, layer '{first.name}' has {want} "
                        f"(shape {list(arr.shape)})")
        if data.shape[0] != labels.shape[0]:
            raise InputArrayError("set_input_arrays(): data and labels must have the same "
                                  f"first dimension; got {data.shape[0]} and {labels.shape[0]}")
        if data.shape[0] % p.batch_size != 0:
            raise InputArrayError(
                "set_input_arrays(): first dimensions of input arrays must be a multiple of "
                f"batch size {p.batch_size}; got {data.shape[0]}")
        self._memory = [data, labels, 0]

    def _feed_memory(self) -> None:
        """MemoryDataLayer::Forward: the tops show the next batch; labels (batch, 1, 1, 1)."""
        assert self._memory is not None
        data, labels, pos = self._memory
        layer = self._net.layer[0]
        batch = layer.memory_data_param.batch_size
        for top, arr in zip(layer.top, (data, labels)):
            self.blobs[top]._data = np.array(arr[pos:pos + batch], dtype=np.float32)
            self.blobs[top]._diff = None
        self._memory[2] = (pos + batch) % len(data)

    # -- backward --------------------------------------------------------------------

    def backward(self, diffs: Sequence[str] | None = None, start: str | None = None,
                 end: str | None = None, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        """pycaffe's Net.backward: sets the output blobs' diffs from kwargs (all of them or
        none; a loss top's diff is its loss weight, so this overwrites it), runs layers
        start..end (names, inclusive) top-down, and returns {blob: diff} for the inputs (or
        the bottoms of `end`) plus `diffs`.  Bottom diffs are overwritten, param diffs
        accumulate until clear_param_diffs(), diffs of layers that need no backward stay."""
        diffs = list(diffs or [])
        for b in diffs:
            self.blobs[b]
        start_ind = self._layer_index(start, "start") if start is not None \
            else len(self.layers) - 1
        if end is not None:
            end_ind = self._layer_index(end, "end")
            outputs = set(self.bottom_names[end] + diffs)
        else:
            end_ind = 0
            outputs = set(self.inputs + diffs)
        if kwargs:
            if set(kwargs) != set(self.outputs):
                raise InputError(
                    f"backward(): top diff arguments {sorted(kwargs)} do not match the net's "
                    f"outputs {self.outputs} (give all of them or none)")
            for name, value in kwargs.items():
                value = np.asarray(value)
                target = self.blobs[name]
                if value.ndim == 0 or target.diff.ndim == 0 \
                        or value.shape[0] != target.shape[0]:
                    raise InputError(
                        f"backward(): diff for '{name}' has shape {list(value.shape)} but the "
                        f"blob has batch size {target.shape[0]} (shape {list(target.shape)})")
                try:
                    target.diff[...] = value
                except ValueError as e:
                    raise ShapeError(
                        f"backward(): diff for '{name}' of shape {list(value.shape)} does not "
                        f"fit the blob of shape {list(target.shape)}: {e}") from e
        self._backward_from_to(start_ind, end_ind)
        return {out: self.blobs[out].diff for out in outputs}

    def _backward_from_to(self, start: int, end: int) -> None:
        """Net::BackwardFromTo: layers start down to end, those that need backward."""
        self._alias_shared_diffs()
        plan = self._plan
        noded = {n.meta["caffe_layer"] for n in self._gm.graph.nodes if "caffe_layer" in n.meta}
        layers = list(self._net.layer)
        for i in range(start, end - 1, -1):
            layer = layers[i]
            if not plan.layer_need_backward[i] or layer.type in SOURCE_TYPES:
                continue
            need = plan.bottom_need_backward[i]
            if layer.name not in noded:
                self._identity_backward(layer, need)
                continue
            record = self._tape.get(layer.name)
            if record is None:
                raise InputError(f"backward(): layer '{layer.name}' ({layer.type}) has not run "
                                 "forward since the net was made or reshaped; call forward() "
                                 "first")
            if layer.type == "Python":
                python_layer.backward(self._python_layers[layer.name],
                                      [self.blobs[t] for t in layer.top], need,
                                      [self.blobs[b] for b in layer.bottom])
                continue
            if layer.type in REPLAYED and not plan.param_propagate_down[i]:
                if need[0]:
                    replayed_backward(layer, self.blobs[layer.bottom[0]],
                                      self.blobs[layer.top[0]])
                continue
            if layer.type == "LRN" and layer.top[0] == layer.bottom[0]:
                if need[0]:
                    lrn_inplace_backward(layer, record.leaves[0].detach().cpu().numpy(),
                                         self.blobs[layer.top[0]])
                continue
            top_diffs = [torch.from_numpy(self.blobs[t].diff) for t in layer.top]
            if layer.type in READS_DATA and not plan.param_propagate_down[i]:
                if need[0]:
                    bottom, top = (torch.from_numpy(self.blobs[b].data)
                                   for b in (layer.bottom[0], layer.top[0]))
                    if layer.type in READS_BOTTOM:
                        (g,), _ = layer_vjp(layer, record, top_diffs, need, (), bottom)
                    else:
                        g = neuron_backward(layer, bottom, top, top_diffs[0])
                    diff = self.blobs[layer.bottom[0]].diff
                    diff[...] = 0 if g is None else g.detach().cpu().numpy()
                continue
            bottom_grads, param_grads = layer_vjp(layer, record, top_diffs, need,
                                                  plan.param_propagate_down[i], None)
            for b, flag, g in zip(layer.bottom, need, bottom_grads):
                if flag:
                    diff = self.blobs[b].diff
                    diff[...] = 0 if g is None else g.detach().cpu().reshape(diff.shape).numpy()
            for blob, g in zip(self.layers[i].blobs, param_grads):
                if g is not None:
                    blob.diff[...] += g.detach().cpu().reshape(blob.shape).numpy()

    def _identity_backward(self, layer: caffe_pb2.LayerParameter, need: tuple[bool, ...]) -> None:
        """Layers without a node: Split sums its tops' diffs into the bottom's; the other
        pass-through layers (TEST Dropout) copy; a layer without tops (Silence) zero-fills."""
        if not layer.top:
            for b, flag in zip(layer.bottom, need):
                if flag:
                    self.blobs[b].diff[...] = 0
            return
        if len(layer.bottom) == 1 and len(layer.top) > 1:  # Split
            if need[0]:
                total = np.zeros_like(self.blobs[layer.bottom[0]].diff)
                for t in layer.top:
                    total += self.blobs[t].diff.reshape(total.shape)
                self.blobs[layer.bottom[0]].diff[...] = total
            return
        for j, t in enumerate(layer.top):
            b = layer.bottom[j if j < len(layer.bottom) else 0]
            if b != t and need[j if j < len(need) else 0]:
                self.blobs[b].diff[...] = self.blobs[t].diff.reshape(self.blobs[b].shape)

    def _alias_shared_diffs(self) -> None:
        """Net::ShareWeights shares diffs too: layers with one tensor show one diff."""
        owners: dict[int, Blob] = {}
        for layer in self.layers:
            for blob in layer.blobs:
                owner = owners.setdefault(id(blob._tensor), blob)
                if owner is not blob and blob._diff is not owner.diff:
                    blob._diff = owner.diff

    def clear_param_diffs(self) -> None:
        """Net::ClearParamDiffs: zero every parameter blob's diff."""
        for layer in self.layers:
            for blob in layer.blobs:
                blob.diff[...] = 0

    def forward_backward_all(self, blobs: Sequence[str] | None = None,
                             diffs: Sequence[str] | None = None, **kwargs: np.ndarray
                             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """pycaffe's Net.forward_backward_all: forward and backward in batches; kwargs hold
        inputs (for forward) and output diffs (for backward); padding cut from both."""
        blobs, diffs = list(blobs or []), list(diffs or [])
        all_outs: dict[str, Any] = {out: [] for out in set(self.outputs + blobs)}
        all_diffs: dict[str, Any] = {d: [] for d in set(self.inputs + diffs)}
        forward_batches = self._batch({n: kwargs[n] for n in self.inputs if n in kwargs}) \
            if any(n in kwargs for n in self.inputs) else iter(())
        backward_batches = self._batch({n: kwargs[n] for n in self.outputs if n in kwargs}) \
            if any(n in kwargs for n in self.outputs) else iter(())
        fb: dict[str, np.ndarray]
        bb: dict[str, np.ndarray]
        for fb, bb in itertools.zip_longest(forward_batches, backward_batches, fillvalue={}):
            batch_blobs = self.forward(blobs=blobs, **fb)  # type: ignore[arg-type]
            batch_diffs = self.backward(diffs=diffs, **bb)  # type: ignore[arg-type]
            for out, value in batch_blobs.items():
                all_outs[out].extend(value.copy())
            for d, value in batch_diffs.items():
                all_diffs[d].extend(value.copy())
        outs = {k: np.asarray(v) for k, v in all_outs.items()}
        grads = {k: np.asarray(v) for k, v in all_diffs.items()}
        pad = len(next(iter(outs.values()))) - len(next(iter(kwargs.values())))
        if pad:
            outs = {k: v[:-pad] for k, v in outs.items()}
            grads = {k: v[:-pad] for k, v in grads.items()}
        return outs, grads

    def __repr__(self) -> str:
        return f"<caffe_fx.pycaffe.Net {self._net.name!r} ({len(self.layers)} layers)>"
