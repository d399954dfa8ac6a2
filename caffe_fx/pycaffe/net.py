"""`caffe.Net` on torch.fx: pycaffe's forward-side surface over a compiled GraphModule.

pycaffe facade.  Mirrors python/caffe/pycaffe.py (blobs, params, forward, forward_all,
...) and the Net bindings of python/caffe/_caffe.cpp over src/caffe/net.cpp (Init,
ForwardFromTo, Reshape, CopyTrainedLayersFrom, ShareTrainedLayersWith, ToProto).  The net
is compiled once per set of input shapes with every blob as an output; every blob keeps
one float32 NumPy storage that the next forward reads and writes, as Caffe's blobs do.
"""
from __future__ import annotations

import functools
import itertools
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import fx

from .. import _memory, binding, pipeline
from ..data import random_seed
from ..data.top_shapes import READS_BATCHES
from ..errors import (
    BlobNameError,
    DeviceError,
    FileOpenError,
    InputArrayError,
    InputError,
    ShapeError,
    WeightsError,
)
from ..frontend.files import path_argument
from ..frontend.hdf5 import is_hdf5, write_hdf5
from ..frontend.read import NetSource, is_path, read_stored
from ..lowering.builder import SOURCE_TYPES, Built, Lowering
from ..layers import layers_overlay
from ..lowering.expose import alias, expose_values
from ..lowering.layers.python import python_sources
from ..lowering.registry import CaffeModule, LayerView, lookup, supported_layers, top_loss_weights
from ..ops import onednn
from ..passes.name_automatic_tops import automatic_blobs
from ..proto import caffe_pb2
from ..weights_io import save_caffemodel
from . import python_layer
from .blob import Blob
from .plan import plan_backward

TRAIN: int = caffe_pb2.TRAIN
TEST: int = caffe_pb2.TEST

# Caffe::mode() and Caffe::SetDevice: process-wide, as in Caffe.
# Caffe::set_random_seed's seed lives with the data feed that draws from it
# (caffe_fx.data.set_random_seed), where caffe_fx.Solver sets it too.
_MODE: dict[str, Any] = {"gpu": False, "device": 0}

# Data layers whose Forward the facade runs through caffe_fx.data's feed (MemoryData is
# fed by set_input_arrays).
_FED_TYPES = frozenset({"Data", "ImageData", "HDF5Data", "WindowData", "DenseImageData"})

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


def layer_type_list() -> list[str]:
    """The layer types a Net can hold, sorted as LayerRegistry::LayerTypeList gives them."""
    return sorted(set(supported_layers()) | SOURCE_TYPES)


def _device() -> torch.device:
    return torch.device("cuda", _MODE["device"]) if _MODE["gpu"] else torch.device("cpu")


def _carry_layer_state(old: fx.GraphModule, new: fx.GraphModule) -> None:
    """State a layer keeps between forwards (RNN/LSTM's last hidden state) survives a
    reshape that switches GraphModules, as Caffe's layer objects do."""
    names = new.meta["caffe"].modules
    for layer, name in old.meta["caffe"].modules.items():
        module = new.get_submodule(names[layer]) if layer in names else None
        take = getattr(module, "carry_state_from", None)
        if take is not None:
            take(old.get_submodule(name))


def _vjp(roots: Sequence[torch.Tensor], seeds: Sequence[torch.Tensor],
         tensors: Sequence[torch.Tensor]) -> dict[int, torch.Tensor | None]:
    """{id(t): gradient} for the tensors that require grad, from roots seeded with seeds;
    the graph is kept, as a Caffe net may run backward again without a forward."""
    inputs = [t for t in tensors if t.requires_grad]
    if not roots or not inputs:
        return {}
    got = torch.autograd.grad(list(roots), inputs, list(seeds), retain_graph=True,
                              allow_unused=True)
    return {id(t): g for t, g in zip(inputs, got)}


def _accumulate(params: Iterable[tuple[Blob, torch.Tensor]],
                grads: Mapping[int, torch.Tensor | None], taken: set[int]) -> None:
    """Layer::Backward adds to a param's diff (Net::ClearParamDiffs zeroes it).  A
    cleared diff takes a gradient whose memory no blob holds (`taken`: the storages of
    the seeds and of the diffs adopted so far, updated here) without a copy."""
    for blob, tensor in params:
        grad = grads.get(id(tensor))
        if grad is not None:
            memory = grad.untyped_storage().data_ptr()
            own = grad._base is None and memory not in taken
            blob.add_diff(grad, own=own)
            if own:
                taken.add(memory)


def _names(names: Any, method: str, arg: str) -> list[str]:
    """A list of blob names as forward(blobs=) / backward(diffs=) take it (a lone string
    would be read as its letters)."""
    if names is None:
        return []
    if isinstance(names, str):
        raise InputError(f"{method}({arg}={names!r}): allowed: a list of blob names, e.g. "
                         f"{arg}=[{names!r}]")
    return list(names)


class NamedDict(OrderedDict):
    """pycaffe's OrderedDicts; a missing name raises KeyError naming what exists."""

    def __init__(self, items: Any, what: str, plural: str | None = None) -> None:
        super().__init__(items)
        self._what, self._plural = what, plural or what + "s"

    def __missing__(self, key: object) -> Any:
        raise BlobNameError(f"no {self._what} {key!r} in the net; {self._plural}: {list(self)}")

    def __reduce__(self) -> Any:
        return (type(self), (list(self.items()), self._what, self._plural))


class NetLayer:
    """An entry of `net.layers`: Caffe's Layer as pycaffe shows it (`type`, `blobs`)."""

    def __init__(self, layer_type: str, blobs: list[Blob]) -> None:
        self.type = layer_type
        self.blobs = blobs

    def __repr__(self) -> str:
        return f"<caffe_fx.pycaffe layer type={self.type!r} blobs={len(self.blobs)}>"


def _check_file(source: Any) -> None:
    """pycaffe's CheckFile: a path Net() cannot open is a RuntimeError, "Could not open
    file X" (prototxt text and NetParameters pass)."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and is_path(source)):
        try:
            with open(source, "rb"):
                pass
        except OSError as e:
            raise FileOpenError(f"Could not open file {os.fspath(source)} "
                                f"({e.strerror or e})") from None


class Net:
    """`caffe.Net(network_file, phase, level=0, stages=None, weights=None)`, or the
    legacy `caffe.Net(network_file, pretrained_file, phase)`."""

    def __init__(self, network_file: NetSource, *args: Any, phase: int | None = None,
                 level: int = 0, stages: Sequence[str] | None = None,
                 weights: str | os.PathLike | None = None,
                 layers: Mapping[str, Any] | None = None) -> None:
        """`layers`: compile()'s mapping {layer type: factory(param)} (caffe_fx/layers.py),
        for this net; caffe_fx.register_layer registers types for every net."""
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
            legacy = (f" ({weights!r} was taken as the weights file of the legacy "
                      "Net(network_file, pretrained_file, phase))"
                      if args and isinstance(args[0], (str, os.PathLike)) else "")
            raise InputError("Net(network_file, phase, ...): phase is required; allowed: "
                             f"caffe.TRAIN, caffe.TEST{legacy}")
        _check_file(network_file)
        self._layers = dict(layers) if layers else None
        with layers_overlay(self._layers, "Net(layers=...)"):
            prepared = pipeline.prepare(network_file, phase=phase, level=level,
                                        stages=stages or ())
        where = self._where = prepared.where
        self._prepared = prepared
        self._proto = prepared.proto  # what save() writes, as Net::ToProto does
        net = self._net = prepared.net  # with the "(automatic)" tops named
        self._automatic = automatic_blobs(net)
        self._graph = prepared.graph
        self._sources = pipeline.sources(prepared)
        self._gms: dict[tuple[tuple[int, ...], ...], fx.GraphModule] = {}
        self._device_gms: dict[int, fx.GraphModule] = {}
        self._tensors: dict[str, list[torch.Tensor]] = {}  # layer -> its blobs' tensors
        self._python_layers: dict[str, python_layer.PythonLayerModule] = {}

        gm, modules = self._build(None)
        built = Built(gm, gm.meta["caffe"], tuple(modules))
        binding.bind(built, net, None, where)  # Caffe's fillers, shared params
        # Blob.data is a NumPy view: writes through it move no version counter, so no
        # weight reordered for oneDNN may be kept (ops/onednn.py).  Rebuilds adopt these
        # tensors (_adopt).
        onednn.use_prepacked(gm, False)
        self._slots = binding.slots_of(built, net)  # what copy_from/load_hdf5 fit to
        for view, module in modules:
            self._tensors[view.name] = module.blob_tensors()
        info: Lowering = gm.meta["caffe"]
        self._plan = plan_backward(net, {k: len(v) for k, v in self._tensors.items()})
        self._gms[self._key_of(info)] = gm
        self._gm = gm
        self._probes: dict[int, fx.GraphModule] = {}
        self._check_blob_memory(info)
        self.blobs = NamedDict(((b, Blob(torch.zeros(info.blob_shapes[b])))
                                for b in self._graph.graph["blobs"]), "blob")
        self._link_shared()
        self._make_params()
        self._values: dict[str, torch.Tensor] = {}  # the last forward's values, by value id
        self._io: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self._chained = False  # _values hold one autograd graph of the whole net
        self._device = torch.device("cpu")
        self._memory: list[Any] | None = None  # MemoryData: [data, labels, position]
        self._feed, self._fed_at = self._open_feed()
        # Net::add_before_forward & co.: callables of the layer index, in the order added.
        self._hooks: dict[str, list[Callable[[int], Any]]] = {
            "before_forward": [], "after_forward": [], "before_backward": [],
            "after_backward": []}
        # Layer::SetLossWeights: a loss top's diff holds its loss weight, the seed of backward.
        for layer in net.layer:
            for top, w in zip(layer.top, top_loss_weights(layer)):
                if w:
                    self.blobs[top].diff[...] = w
        if weights is not None:
            _check_file(weights)
            self.copy_from(weights)

    # -- compiling -------------------------------------------------------------------

    def _key_of(self, info: Lowering) -> tuple[tuple[int, ...], ...]:
        return tuple(info.blob_shapes[s] for s in self._sources)

    def _build(self, shapes: Mapping[str, Sequence[int]] | None
               ) -> tuple[fx.GraphModule, list[tuple[LayerView, CaffeModule]]]:
        token = READS_BATCHES.set(True)  # its data layers are read, not given shapes
        try:  # Python data layers run their code, as in pycaffe
            with layers_overlay(self._layers, "Net(layers=...)", warn=False), \
                    python_sources(False):
                built = pipeline.lower(
                    self._prepared, input_shapes=shapes,
                    outputs=list(self._graph.graph["blobs"]),
                    python_layers=self._python_layers)  # type: ignore[arg-type]
        finally:
            READS_BATCHES.reset(token)
        gm, modules = built.gm, list(built.modules)
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
            binding.materialise(module)

    def _current_key(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.blobs[s].shape for s in self._sources)

    def reshape(self) -> None:
        """Net::Reshape: re-infers every blob's shape from the input blobs' shapes."""
        key = self._current_key()
        if key not in self._gms:
            gm, modules = self._build(dict(zip(self._sources, key)))
            self._adopt(modules)
            self._gms[key] = gm
        if self._gms[key] is not self._gm:
            _carry_layer_state(self._gm, self._gms[key])
        self._gm = self._gms[key]
        info: Lowering = self._gm.meta["caffe"]
        self._check_blob_memory(info)
        for name, blob in self.blobs.items():
            if name not in self._sources and blob.shape != info.blob_shapes[name]:
                blob.reshape(*info.blob_shapes[name])
        self._link_shared()
        self._values, self._io, self._chained = {}, {}, False

    def _check_blob_memory(self, info: Lowering) -> None:
        """What the blobs at these shapes take beyond the memory they hold already (all of
        it at set-up; a blob keeps its memory when it shrinks) fits in the memory left
        (caffe_fx/_memory.py).  Split, Flatten and Reshape tops share their bottom's."""
        shared = {top for layer in self._net.layer if layer.type in _SHARING_TYPES
                  for top in layer.top if top not in layer.bottom}
        blobs: NamedDict | None = getattr(self, "blobs", None)  # None at set-up

        def growth(name: str) -> int:
            want = 4 * math.prod(info.blob_shapes[name])
            if blobs is None:
                return want
            blob = blobs[name]
            grow = max(0, want - blob._data_t.untyped_storage().nbytes())
            if blob._diff_t is not None:
                grow += max(0, want - blob._diff_t.untyped_storage().nbytes())
            return grow

        _memory.check_fits(((b, growth(b)) for b in self._graph.graph["blobs"]
                            if b not in shared), self._where, "the blobs' new memory",
                           "give the inputs smaller shapes (a smaller batch)")

    def _link_shared(self) -> None:
        """Split, Flatten and Reshape tops share their bottom's data in Caffe
        (Blob::ShareData), so they always show the bottom's current values; Flatten and
        Reshape share the diff too (Blob::ShareDiff), Split sums its tops' diffs."""
        for layer in self._net.layer:
            if layer.type in _SHARING_TYPES and layer.bottom:
                bottom = self.blobs[layer.bottom[0]]
                for top in layer.top:
                    blob = self.blobs[top]
                    if blob is not bottom:
                        if layer.type == "Split" and blob.shape != bottom.shape:
                            blob.reshape(*bottom.shape)  # SplitLayer::Reshape: ReshapeLike
                        blob.share_data(bottom)
                        if layer.type != "Split":
                            blob.share_diff(bottom)

    def _make_params(self) -> None:
        blobs = {name: [Blob.of_tensor(t) for t in tensors]
                 for name, tensors in self._tensors.items()}
        own = python_layer.own_layers(self._python_layers, self._tensors)
        self.layers = [own[layer.name] if layer.name in own  # pycaffe shows the object
                       else NetLayer(layer.type, blobs.get(layer.name, []))
                       for layer in self._net.layer]
        self.params = NamedDict(((name, lr.blobs) for name, lr in zip(self._layer_names,
                                                                       self.layers)
                                 if lr.blobs), "layer with parameters",
                                "layers with parameters")

    @property
    def _layer_names(self) -> list[str]:
        return [layer.name for layer in self._net.layer]

    # -- _caffe.cpp's own members, which pycaffe.py builds its properties from ---------

    @property
    def _blob_names(self) -> list[str]:
        return list(self.blobs)

    @property
    def _blobs(self) -> list[Blob]:
        return list(self.blobs.values())

    def _blob_ids(self, names: Iterable[str]) -> list[int]:
        order = {b: k for k, b in enumerate(self.blobs)}
        return [order[b] for b in names]

    def _top_ids(self, i: int) -> list[int]:
        return self._blob_ids(self._net.layer[self._check_index(i, "_top_ids")].top)

    def _bottom_ids(self, i: int) -> list[int]:
        return self._blob_ids(self._net.layer[self._check_index(i, "_bottom_ids")].bottom)

    @property
    def _inputs(self) -> list[int]:
        return self._blob_ids(self.inputs)

    @property
    def _outputs(self) -> list[int]:
        return self._blob_ids(self.outputs)

    @property
    def _blob_loss_weights(self) -> list[float]:
        return list(self.blob_loss_weights.values())

    def _check_index(self, i: int, what: str) -> int:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.layers):
            raise InputError(f"Net.{what}({i!r}): not a layer index; allowed: 0 to "
                             f"{len(self.layers) - 1}")
        return i

    def _forward(self, start: int, end: int) -> float:
        """Net::ForwardFromTo(start, end) by layer index: the loss of those layers (each
        loss top's sum times its weight)."""
        names = self._layer_names
        self.forward(start=names[self._check_index(start, "_forward")],
                     end=names[self._check_index(end, "_forward")])
        loss = np.float32(0)
        for layer in self._net.layer[start:end + 1]:
            for top, w in zip(layer.top, top_loss_weights(layer)):
                if w:
                    loss += np.float32(w) * self.blobs[top].data.sum(dtype=np.float32)
        return float(loss)

    def _backward(self, start: int, end: int) -> None:
        """Net::BackwardFromTo(start, end) by layer index."""
        names = self._layer_names
        self.backward(start=names[self._check_index(start, "_backward")],
                      end=names[self._check_index(end, "_backward")])

    def _set_input_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        self.set_input_arrays(data, labels)

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
        """The GraphModule the facade runs: the net's, returning every value by id, on the
        mode's device (the net's modules and blobs move there once, as Caffe's
        SyncedMemory moves to the device that reads it)."""
        device = _device()
        if device != self._device:
            self._move_to(device)
        for layer in self.layers:  # pycaffe code may have written weights on the host
            for blob in layer.blobs:
                blob.push()
        probe = self._probes.get(id(self._gm))
        if probe is None:
            probe = expose_values(self._gm, self._graph)
            self._probes[id(self._gm)] = probe
        return probe

    def _move_to(self, device: torch.device) -> None:
        """The modules' parameters move in place (the Parameter objects, which the param
        blobs view, stay); buffers are re-collected; blobs of other shapes' graphs are
        dropped, so that one set of tensors remains."""
        key = self._key_of(self._gm.meta["caffe"])
        self._gms = {key: self._gm}
        self._probes = {}
        self._gm.to(device)
        info: Lowering = self._gm.meta["caffe"]
        for layer, sub in info.modules.items():
            module = cast(CaffeModule, self._gm.get_submodule(sub))
            self._tensors[layer] = module.blob_tensors()
        self._make_params()
        for blob in self.blobs.values():
            blob.to(device)
        self._link_shared()
        self._values, self._io, self._chained = {}, {}, False
        self._device = device

    def forward(self, blobs: Sequence[str] | None = None, start: str | None = None,
                end: str | None = None, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        """pycaffe's Net.forward: sets the input blobs from kwargs (all of them or none),
        runs layers start..end (names, inclusive) and returns {blob: data} for the
        outputs (or the tops of `end`) plus `blobs`."""
        blobs = _names(blobs, "forward", "blobs")
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
        if self._feed is not None and start_ind <= self._fed_at <= end_ind:
            self._feed_data()
        if self._current_key() != self._key_of(self._gm.meta["caffe"]):
            self.reshape()  # Layer::Forward reshapes first, so forward() follows new inputs
        hooked = self._hooks["before_forward"] or self._hooks["after_forward"]
        if start_ind == 0 and end_ind == len(self.layers) - 1 and not hooked:
            self._forward_all_layers()
        else:
            self._forward_from_to(start_ind, end_ind)
        return {out: self.blobs[out].data for out in outputs}

    # -- hooks (Net::add_before_forward ...; BVLC's python/train.py times layers with them)

    def before_forward(self, callback: Callable[[int], Any]) -> None:
        """callback(i) before layer i's Forward, for every layer forward() runs."""
        self._add_hook("before_forward", callback)

    def after_forward(self, callback: Callable[[int], Any]) -> None:
        """callback(i) after layer i's Forward."""
        self._add_hook("after_forward", callback)

    def before_backward(self, callback: Callable[[int], Any]) -> None:
        """callback(i) before layer i's Backward, for every layer backward() passes (also
        those that need no backward, as Net::BackwardFromTo)."""
        self._add_hook("before_backward", callback)

    def after_backward(self, callback: Callable[[int], Any]) -> None:
        """callback(i) after layer i's Backward; a caffe.NCCL reduces layer i's diffs."""
        self._add_hook("after_backward", callback)

    def _add_hook(self, kind: str, callback: Callable[[int], Any]) -> None:
        if not callable(callback):
            raise InputError(f"Net.{kind}({callback!r}): not callable; allowed: a function "
                             "of the layer index, or a caffe.NCCL")
        # With hooks, forward and backward run layer by layer (Net::ForwardFromTo).
        self._hooks[kind].append(callback)

    def _leaf(self, blob: str, needs_grad: bool) -> torch.Tensor:
        """A blob's data as a layer's input: the blob's own tensor when nothing will be
        differentiated, else a copy that autograd keeps (Caffe's layers that need their
        bottoms in backward keep them; a later in-place layer must not change it)."""
        tensor = self.blobs[blob].tensor
        if not self._plan.any:
            return tensor
        return tensor.clone().requires_grad_(needs_grad)

    def _forward_all_layers(self) -> None:
        """The whole net in one call of its GraphModule: one autograd graph when a later
        backward() needs it, none otherwise."""
        probe = self._runner()
        feeds = [self._leaf(n.meta["caffe_blob"], n.meta["caffe_blob"] in self._grad_inputs)
                 for n in probe.graph.nodes if n.op == "placeholder"]
        with torch.set_grad_enabled(self._plan.any):
            values = probe(*feeds)
        self._values, self._io, self._chained = values, {}, self._plan.any
        self._store_values(values)

    def _store_values(self, values: Mapping[str, torch.Tensor]) -> None:
        """Every blob shows its final value (its last in-place version), in net order so
        that a Reshape's in-place writers show through its bottom, as in Caffe."""
        split_tops, sharing = self._split_tops, self._sharing_blobs
        adopted: set[int] = set()
        resized = False
        for name, vid in self._graph.graph["blobs"].items():
            value = values.get(vid)
            if value is None or name in split_tops:
                continue
            blob = self.blobs[name]
            resized |= blob.shape != tuple(value.shape)
            # Zero-copy where no other blob shares the memory (Caffe's blobs own theirs)
            memory = value.untyped_storage().data_ptr()
            if name in sharing or memory in adopted or not blob.adopt_data(value):
                blob.set_data(value)
            else:
                adopted.add(memory)
        if resized:  # a data-dependent top (Filter): the sharing tops follow
            self._link_shared()

    @functools.cached_property
    def _split_tops(self) -> frozenset[str]:
        return frozenset(t for layer in self._net.layer if layer.type == "Split"
                         for t in layer.top)

    @functools.cached_property
    def _sharing_blobs(self) -> frozenset[str]:
        """Blobs whose data or diff another blob views (Split, Flatten, Reshape)."""
        return frozenset(b for layer in self._net.layer if layer.type in _SHARING_TYPES
                         for b in (*layer.bottom[:1], *layer.top))

    @functools.cached_property
    def _grad_inputs(self) -> frozenset[str]:
        """Input blobs whose diff Caffe computes (force_backward, propagate_down)."""
        plan, g = self._plan, self._graph
        out = set()
        for i, layer in enumerate(self._net.layer):
            if layer.type in SOURCE_TYPES:
                continue
            for j, vid in enumerate(g.nodes[i]["bottoms"]):
                value = g.graph["values"][vid]
                producer = self._net.layer[value.producer]
                if producer.type in SOURCE_TYPES and plan.bottom_need_backward[i][j]:
                    out.add(layer.bottom[j])
        return frozenset(out)

    def _forward_from_to(self, start: int, end: int) -> None:
        """Net::ForwardFromTo: layer by layer, each reading and writing the blobs."""
        probe = self._runner()
        nodes = {n.meta["caffe_layer"]: n for n in probe.graph.nodes
                 if "caffe_layer" in n.meta and n.target is not alias}
        plan = self._plan
        if self._chained:  # the values no longer form one graph
            self._io = {i: self._io_of(i) for i in range(len(self._net.layer))
                        if plan.layer_need_backward[i]}
            self._chained = False
        for i in range(start, end + 1):
            for hook in self._hooks["before_forward"]:
                hook(i)
            self._forward_layer(i, probe, nodes)
            for hook in self._hooks["after_forward"]:
                hook(i)

    def _forward_layer(self, i: int, probe: fx.GraphModule, nodes: Mapping[str, fx.Node]
                       ) -> None:
        """Layer i's Forward on the blobs, as its own ops."""
        plan = self._plan
        layer = self._net.layer[i]
        if layer.type in SOURCE_TYPES:
            return  # data layers: forward() set their tops (the feed, MemoryData)
        need = plan.bottom_need_backward[i]
        bottoms = [self._leaf(b, need[j]) for j, b in enumerate(layer.bottom)]
        node = nodes.get(layer.name)
        with torch.set_grad_enabled(plan.any):
            if node is None:  # IDENTITY (Split, TEST Dropout) or a layer without tops
                outs = [alias(bottoms[j if j < len(bottoms) else 0])
                        for j in range(len(layer.top))]
            else:
                args: tuple = (bottoms,) if node.args and isinstance(node.args[0],
                                                                     (list, tuple)) \
                    else tuple(bottoms)
                if node.op == "call_module":
                    result = probe.get_submodule(cast(str, node.target))(*args,
                                                                        **node.kwargs)
                else:
                    result = cast(Any, node.target)(*args, **node.kwargs)
                outs = list(result) if isinstance(result, (tuple, list)) else [result]
        if plan.any:
            self._io[i] = (bottoms, outs)
        for top, value in zip(layer.top, outs):
            self.blobs[top].set_data(value)
        if any(self.blobs[t].shape != tuple(v.shape) for t, v in zip(layer.top, outs)):
            self._link_shared()

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
        all_outs: dict[str, Any] = {out: [] for out in set(
            self.outputs + _names(blobs, "forward_all", "blobs"))}
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
        path_argument(filename, "copy_from: the caffemodel file", WeightsError)
        stored = binding.read(filename)
        assert stored is not None  # a path always reads to weights or raises
        binding.copy_into(binding.fit(stored, self._slots, os.fspath(filename)), self._tensors)

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
        path_argument(filename, "save: the caffemodel file", InputError)
        save_caffemodel(filename, {name: list(t) for name, t in self._tensors.items()},
                        self._saved_proto, force=True)

    @functools.cached_property
    def _saved_proto(self) -> caffe_pb2.NetParameter:
        """Net::ToProto: the net's name and its layers (implicit Splits too) as set-up left
        them: each with the net's phase unless it has its own, a loss layer given its
        default loss_weight 1 (LossLayer::LayerSetUp); no state nor other net field."""
        out = caffe_pb2.NetParameter(name=self._proto.name)
        for layer in self._proto.layer:
            saved = out.layer.add()
            saved.CopyFrom(layer)
            if not saved.HasField("phase"):
                saved.phase = self._proto.state.phase
            spec = lookup(saved.type)
            if not saved.loss_weight and spec is not None and spec.is_loss:
                saved.loss_weight.append(1.0)
        return out

    def save_hdf5(self, filename: str | os.PathLike) -> None:
        """Net::ToHDF5: a group /data/<layer> per layer holding dataset <i> for each blob
        the layer owns (a param shared from another layer is written by its owner only);
        replaces an existing file, as Caffe does."""
        path_argument(filename, "save_hdf5: the HDF5 file", InputError)
        seen: set[int] = set()
        layers = []
        for layer in self._net.layer:
            arrays: list[np.ndarray | None] = []
            for tensor in self._tensors.get(layer.name, []):
                arrays.append(None if id(tensor) in seen else tensor.detach().cpu().numpy())
                seen.add(id(tensor))
            layers.append((layer.name, arrays))
        write_hdf5(filename, layers, force=True)

    def load_hdf5(self, filename: str | os.PathLike) -> None:
        """Net::CopyTrainedLayersFromHDF5: layers matched by name, shapes must match
        exactly; a dataset may be missing only for a param shared from another layer."""
        path_argument(filename, "load_hdf5: the HDF5 file", WeightsError)
        if not os.path.isfile(filename) or not is_hdf5(filename):
            raise WeightsError(f"{filename}: cannot open the HDF5 weights file (no such file, "
                               "or not HDF5)")
        stored = read_stored(filename)
        binding.copy_into(binding.fit(stored, self._slots, os.fspath(filename)), self._tensors)

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

    def _open_feed(self) -> tuple[Any, int]:
        """Net::Init sets the data layers up: their sources are opened (and checked) now,
        and read ahead from then on.  (The feed, the index of the first fed layer.)"""
        fed = [i for i, lp in enumerate(self._net.layer) if lp.type in _FED_TYPES]
        if not fed:
            return None, -1
        from .. import distributed
        from ..data import open_feed

        sub = caffe_pb2.NetParameter()
        sub.layer.extend(self._net.layer[i] for i in fed)
        feed = open_feed(sub, phase=self._net.state.phase, where=self._where,
                         seed=random_seed(), rank=distributed.rank(),
                         world_size=distributed.world_size())  # DataLayer::Skip
        return feed, fed[0]

    def _feed_data(self) -> None:
        """The data layers' Forward: their tops take the next prefetched batch."""
        for top, value in self._feed.next().items():
            self.blobs[top].set_data(torch.from_numpy(value))

    def _feed_memory(self) -> None:
        """MemoryDataLayer::Forward: the tops show the next batch; labels (batch, 1, 1, 1)."""
        assert self._memory is not None
        data, labels, pos = self._memory
        layer = self._net.layer[0]
        batch = layer.memory_data_param.batch_size
        for top, arr in zip(layer.top, (data, labels)):
            self.blobs[top].set_data(torch.from_numpy(np.array(arr[pos:pos + batch],
                                                               dtype=np.float32)))
        self._memory[2] = (pos + batch) % len(data)

    # -- backward --------------------------------------------------------------------

    def backward(self, diffs: Sequence[str] | None = None, start: str | None = None,
                 end: str | None = None, **kwargs: np.ndarray) -> dict[str, np.ndarray]:
        """pycaffe's Net.backward: sets the output blobs' diffs from kwargs (all of them or
        none; a loss top's diff is its loss weight, so this overwrites it), runs layers
        start..end (names, inclusive) top-down, and returns {blob: diff} for the inputs (or
        the bottoms of `end`) plus `diffs`.  Bottom diffs are overwritten, param diffs
        accumulate until clear_param_diffs(), diffs of layers that need no backward stay."""
        diffs = _names(diffs, "backward", "diffs")
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
        hooked = self._hooks["before_backward"] or self._hooks["after_backward"]
        if self._chained and start_ind == len(self.layers) - 1 and end_ind == 0 and not hooked:
            self._backward_all()
        else:
            self._backward_from_to(start_ind, end_ind)
        return {out: self.blobs[out].diff for out in outputs}

    def _io_of(self, i: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Layer i's bottoms and tops as the last forward computed them."""
        if i in self._io:
            return self._io[i]
        attrs = self._graph.nodes[i]
        try:
            return ([self._values[v] for v in attrs["bottoms"]],
                    [self._values[v] for v in attrs["tops"]])
        except KeyError:
            layer = self._net.layer[i]
            raise InputError(f"backward(): layer '{layer.name}' ({layer.type}) has not run "
                             "forward since the net was made or reshaped; call forward() "
                             "first") from None

    def _param_grads(self, i: int) -> list[tuple[Blob, torch.Tensor]]:
        """Layer i's param blobs that Caffe differentiates, with their tensors."""
        flags = self._plan.param_propagate_down[i]
        name = self._net.layer[i].name
        return [(blob, tensor) for blob, tensor, flag
                in zip(self.layers[i].blobs, self._tensors.get(name, []), flags)
                if flag and tensor.requires_grad]

    def _backward_all(self) -> None:
        """Net::Backward as one autograd pass over the forward's graph, seeded with every
        output blob's diff (a loss top's is its loss weight); each blob's diff becomes the
        gradient of the version that its lowest layer needing backward reads, as Caffe's
        in-place layers leave it."""
        plan, g = self._plan, self._graph
        values = g.graph["values"]
        roots, seeds = [], []
        for name in g.graph["outputs"]:
            vid = g.graph["blobs"][name]
            tensor = self._values.get(vid)
            if tensor is not None and tensor.requires_grad \
                    and plan.layer_need_backward[values[vid].producer]:
                roots.append(tensor)
                seeds.append(self.blobs[name].diff_tensor.reshape(tensor.shape))
        writers = self._diff_writers
        targets = [(self.blobs[b], self._values.get(vid)) for b, vid in writers.items()]
        params: dict[int, tuple[Blob, torch.Tensor]] = {}
        for i in range(len(self._net.layer)):
            if plan.layer_need_backward[i]:
                for blob, tensor in self._param_grads(i):
                    params.setdefault(id(tensor), (blob, tensor))
        grads = _vjp(roots, seeds, [t for _, t in targets if t is not None]
                     + [t for _, t in params.values()])
        sharing = self._sharing_blobs
        taken = {s.untyped_storage().data_ptr() for s in seeds}  # a grad may be a seed
        for name, (blob, tensor) in zip(writers, targets):
            grad = grads.get(id(tensor)) if tensor is not None else None
            memory = grad.untyped_storage().data_ptr() if grad is not None else None
            if grad is None or name in sharing or memory in taken or not blob.adopt_diff(grad):
                blob.set_diff(grad)
            else:
                taken.add(memory)
        _accumulate(params.values(), grads, taken)

    @functools.cached_property
    def _diff_writers(self) -> dict[str, str]:
        """Blob -> the value whose gradient its diff holds after Net::Backward: the bottom
        of the lowest layer that writes it (in place, the earliest version)."""
        plan, g = self._plan, self._graph
        writers: dict[str, str] = {}
        for i in range(len(self._net.layer) - 1, -1, -1):
            layer = self._net.layer[i]
            if plan.layer_need_backward[i] and layer.type not in SOURCE_TYPES:
                for j, flag in enumerate(plan.bottom_need_backward[i]):
                    if flag:
                        writers[layer.bottom[j]] = g.nodes[i]["bottoms"][j]
        return writers

    def _backward_from_to(self, start: int, end: int) -> None:
        """Net::BackwardFromTo: layers start down to end, those that need backward, each
        one vector-Jacobian product of its own ops with its tops' current diffs."""
        for i in range(start, end - 1, -1):
            for hook in self._hooks["before_backward"]:
                hook(i)
            if self._plan.layer_need_backward[i] \
                    and self._net.layer[i].type not in SOURCE_TYPES:
                self._backward_layer(i)
            for hook in self._hooks["after_backward"]:
                hook(i)

    def _backward_layer(self, i: int) -> None:
        """Layer i's Backward: one vector-Jacobian product of its own ops with its tops'
        current diffs."""
        plan = self._plan
        layer = self._net.layer[i]
        need = plan.bottom_need_backward[i]
        bottoms, tops = self._io_of(i)
        pairs = [(t, self.blobs[name].diff_tensor.reshape(t.shape))
                 for t, name in zip(tops, layer.top) if t.requires_grad]
        wanted = [(self.blobs[b], bottoms[j]) for j, b in enumerate(layer.bottom)
                  if need[j]]
        params = self._param_grads(i)
        grads = _vjp([t for t, _ in pairs], [d for _, d in pairs],
                     [t for _, t in wanted] + [t for _, t in params])
        for blob, tensor in wanted:  # Silence and the like: zeros
            blob.set_diff(grads.get(id(tensor)))
        _accumulate(params, grads, {d.untyped_storage().data_ptr() for _, d in pairs})

    def clear_param_diffs(self) -> None:
        """Net::ClearParamDiffs: zero every parameter blob's diff."""
        for layer in self.layers:
            for blob in layer.blobs:
                blob.set_diff(None)

    def forward_backward_all(self, blobs: Sequence[str] | None = None,
                             diffs: Sequence[str] | None = None, **kwargs: np.ndarray
                             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """pycaffe's Net.forward_backward_all: forward and backward in batches; kwargs hold
        inputs (for forward) and output diffs (for backward); padding cut from both."""
        blobs = _names(blobs, "forward_backward_all", "blobs")
        diffs = _names(diffs, "forward_backward_all", "diffs")
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
