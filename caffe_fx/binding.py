"""The one weight binder: stored blobs -> a built net's layer blobs.

Last step of the pipeline (pipeline.py).  compile() binds with `bind` (the modules' blobs
become the stored arrays, Caffe's fillers fill the rest); caffe_fx.pycaffe's Net copies
into its blobs with `fit` (copy_from, load_hdf5, its weights= argument); `caffe-fx convert
--prototxt` fits files to a net's shapes with `fit_layer` (weights_io.py).  Mirrors
Net::CopyTrainedLayersFromBinaryProto and ...FromHDF5 in src/caffe/net.cpp and
Blob::ShapeEquals in src/caffe/blob.cpp: layers matched by name, layers the net lacks
skipped, blob counts and shapes checked by Caffe's rules and named in Caffe's words.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

from . import _memory
from .errors import CaffeFxError, ShapeError, UnusedWeightsWarning, WeightsError, together
from .frontend.read import StoredBlob, StoredWeights, read_stored
from .lowering.builder import Built
from .lowering.fillers import fill
from .lowering.registry import CaffeModule, LayerView
from .proto import caffe_pb2

Shape = tuple[int, ...]
WeightsSource = Union[str, os.PathLike, Mapping[str, Sequence[np.ndarray]], None]


@dataclass(frozen=True)
class LayerSlots:
    """Where one Caffe layer's blobs live in a built net, and what they must look like."""

    layer: str
    type: str
    module: str  # submodule name (the state_dict prefix); "" for a layer without one
    attrs: tuple[str, ...]  # caffe_blobs, in Caffe's blob order
    shapes: tuple[Shape, ...]
    # Net::AppendParam: blob k names a ParamSpec an earlier layer owns (param_owners_ != -1)
    shared: tuple[bool, ...]


def slots_of(built: Built, net: caffe_pb2.NetParameter) -> dict[str, LayerSlots]:
    """Every layer the builder set up, in the net's order: a module's blobs, or none."""
    modules = {view.name: module for view, module in built.modules}
    types = {}
    for layer in net.layer:
        types.setdefault(layer.name, layer.type)
    owned: set[str] = set()
    out: dict[str, LayerSlots] = {}
    for layer in net.layer:
        if layer.name in out or layer.name not in built.info.layers:
            continue
        module = modules.get(layer.name)
        if module is None:
            out[layer.name] = LayerSlots(layer.name, layer.type, "", (), (), ())
            continue
        attrs = tuple(module.caffe_blobs)
        shared = []
        for k in range(len(attrs)):
            name = layer.param[k].name if k < len(layer.param) else ""
            shared.append(bool(name) and name in owned)
            if name:
                owned.add(name)
        out[layer.name] = LayerSlots(
            layer.name, layer.type, built.info.modules[layer.name], attrs,
            tuple(tuple(getattr(module, a).shape) for a in attrs), tuple(shared))
    return out


def read(weights: WeightsSource, *, mmap: bool | None = None) -> StoredWeights | None:
    """Arrays the net may own: read_stored's views of the file (copy-on-write maps for
    large files, so a parameter shares the file's pages until it is written, and the
    file is never written; `mmap` as read_stored's), or copies of the caller's arrays
    (never aliased, so training does not write into them)."""
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        layers: dict[str, list[StoredBlob | None]] = {}
        bad = []
        for k, v in weights.items():
            blobs = _mapped_blobs(v) if isinstance(k, str) else type(v).__name__
            if isinstance(blobs, str):
                bad.append(f"{k!r}: {blobs}")
            else:
                layers[k] = [StoredBlob(a, False) for a in blobs]
        if bad:
            raise WeightsError(f"weights={{...}}: {', '.join(bad)}; allowed: a layer name "
                               "mapped to a list of arrays of numbers (its blobs in Caffe's "
                               "order)")
        return StoredWeights(layers, hdf5=False)
    return read_stored(weights, mmap=mmap)


def _mapped_blobs(blobs: Any) -> list[np.ndarray] | str:
    """A weights mapping's value as float32 copies, or what it is instead of a list of
    arrays of numbers (complex values, objects and strings are not: float32 would drop
    or refuse them)."""
    if isinstance(blobs, (str, bytes)) or not isinstance(blobs, Iterable):
        return type(blobs).__name__
    out = []
    for a in blobs:
        try:
            a = np.asarray(a)
        except ValueError:  # ragged nested lists
            return type(blobs).__name__
        if a.dtype.kind not in "fiub":
            return f"an array of {a.dtype}"
        out.append(np.array(a, dtype=np.float32, copy=True))
    return out


def shape_equals(blob: StoredBlob, target: Shape, *, legacy_unknown: bool = False) -> bool:
    """Blob::ShapeEquals: a legacy 4-D blob (num/channels/height/width) matches a target
    of <= 4 axes right-aligned and padded with 1s (old InnerProduct weights (1, 1, N, K),
    biases (1, 1, 1, N)).  `legacy_unknown`: the file format lost the legacy flag (the
    dump formats of `caffe-fx convert`), so any 4-D blob is given that leeway."""
    shape = tuple(blob.array.shape)
    if (blob.legacy or (legacy_unknown and len(shape) == 4)) and len(target) <= 4 \
            and shape == (1,) * (4 - len(target)) + tuple(target):
        return True
    return shape == tuple(target)


def fit_layer(where: str, slots: LayerSlots, blobs: Sequence[StoredBlob | None], *,
              hdf5: bool = False, legacy_unknown: bool = False) -> list[np.ndarray | None]:
    """One layer's stored blobs as arrays of the net's shapes (views, never copies); None
    for a blob an HDF5 file leaves to the layer it is shared from.  Raises WeightsError in
    Caffe's words ("Incompatible number of blobs", "Cannot copy param k weights"), every
    blob that does not fit named."""
    who = f"{where}: layer '{slots.layer}' ({slots.type})"
    names = f" ({', '.join(slots.attrs)})" if slots.attrs else ""
    hint = "; rename the layer to skip its weights"
    n, m = len(blobs), len(slots.shapes)
    if n > m or (n < m and not hdf5):
        raise WeightsError(f"{who}: the weights hold {n} blobs, the layer has {m}{names} "
                           f"(Incompatible number of blobs){hint}")
    out: list[np.ndarray | None] = []
    bad: list[str] = []
    for k, shape in enumerate(slots.shapes):
        blob = blobs[k] if k < n else None
        attr = f" ({slots.attrs[k]})" if slots.attrs else ""
        if blob is None:
            if not slots.shared[k]:  # CopyTrainedLayersFromHDF5: only a shared param may
                bad.append(f"no dataset /data/{slots.layer}/{k}{attr} in the weights "
                           "(Incompatible number of blobs)")
            out.append(None)
        elif shape_equals(blob, shape, legacy_unknown=legacy_unknown):
            out.append(blob.array.reshape(shape))
        else:
            why = "Cannot load blob from hdf5; shape mismatch" if hdf5 \
                else f"Cannot copy param {k} weights"
            bad.append(f"blob {k}{attr} has shape {list(blob.array.shape)} in the weights "
                       f"but {list(shape)} in the net ({why})")
    if bad:
        raise WeightsError(f"{who}: {'; '.join(bad)}{hint}")
    return out


def fit(stored: StoredWeights, slots: Mapping[str, LayerSlots], where: str
        ) -> dict[str, list[np.ndarray | None]]:
    """Net::CopyTrainedLayersFrom: every stored layer the net has, fitted; the others
    are skipped, as Caffe skips them ("Ignoring source layer")."""
    return fit_layers(stored.layers, slots, where, hdf5=stored.hdf5)


def fit_layers(layers: Mapping[str, Sequence[StoredBlob | None]],
               slots: Mapping[str, LayerSlots], where: str, *, hdf5: bool = False,
               legacy_unknown: bool = False) -> dict[str, list[np.ndarray | None]]:
    """fit_layer on every layer of `layers` that `slots` has, in the order of `layers`;
    the layers that do not fit are reported together, in one WeightsError."""
    fitted: dict[str, list[np.ndarray | None]] = {}
    problems: list[CaffeFxError] = []
    for name, blobs in layers.items():
        if name in slots:
            try:
                fitted[name] = fit_layer(where, slots[name], blobs, hdf5=hdf5,
                                         legacy_unknown=legacy_unknown)
            except WeightsError as e:
                problems.append(e)
    if problems:
        raise together(problems, where)
    return fitted


@torch.no_grad()
def bind(built: Built, net: caffe_pb2.NetParameter, stored: StoredWeights | None,
         where: str, *, strict: bool = False) -> None:
    """compile()'s binding: each module's blobs become the fitted arrays themselves (no
    copy; they were never allocated: the builder leaves them on the meta device), or are
    allocated and filled by Caffe's fillers when the weights lack the layer; ParamSpec
    names then share blobs (Net::AppendParam)."""
    fitted = fit(stored, slots_of(built, net), where) if stored is not None else {}
    if stored is not None:
        report_unused(built, net, stored, fitted, where, strict=strict)
    _memory.check_fits(_to_allocate(built, fitted), where,
                       "the parameters not read from weights (Caffe's fillers fill them)",
                       "the layers' num_output and kernel sizes decide them")
    for view, module in built.modules:
        arrays = fitted.get(view.name)
        if type(module).to_empty is not torch.nn.Module.to_empty:
            module.to_empty(device="cpu")  # it restores state of its own (InfogainLoss's H)
        if arrays is not None:
            _adopt_arrays(module, arrays)
        try:
            materialise(module)
        except RuntimeError as e:  # the allocator refusing (out of memory, RLIMIT_AS)
            shapes = [list(getattr(module, a).shape) for a in module.caffe_blobs]
            raise ShapeError(f"{where}: layer '{view.name}' ({view.type}): cannot allocate "
                             f"its blobs of shapes {shapes}: {str(e).splitlines()[0]}") from e
        if arrays is None:
            for name, filler in zip(module.caffe_blobs, module.fillers):
                fill(getattr(module, name), filler, f"layer '{view.name}' ({view.type})")
    share_params(built.modules, where)
    freeze_params(built.modules, net)
    for _, module in built.modules:
        module.blobs_settled()


def _to_allocate(built: Built, fitted: Mapping[str, object]) -> Iterator[tuple[str, int]]:
    """(name, bytes) of every tensor bind() will allocate: those still on the meta
    device, less the blobs adopted from the weights."""
    for view, module in built.modules:
        adopted = set(module.caffe_blobs) if view.name in fitted else set()
        for sub in module.modules():
            for name, t in [*sub._parameters.items(), *sub._buffers.items()]:
                if t is not None and t.is_meta and not (sub is module and name in adopted):
                    yield f"{view.name}.{name}", t.numel() * t.element_size()


def report_unused(built: Built, net: caffe_pb2.NetParameter, stored: StoredWeights,
                  fitted: Mapping[str, object], where: str, *, strict: bool = False) -> None:
    """Nothing silent about weights that do not fit: one UnusedWeightsWarning (a
    WeightsError with `strict`) listing the net's layers with blobs the weights leave to
    the fillers and the weights' layers with blobs the net does not have (Caffe's
    "Ignoring source layer"; layers pruned by outputs= are the net's, so not listed)."""
    names = {layer.name for layer in net.layer}
    unfilled = [view.name for view, module in built.modules
                if module.caffe_blobs and view.name not in fitted]
    ignored = [name for name, blobs in stored.layers.items() if blobs and name not in names]
    if not unfilled and not ignored:
        return
    parts = []
    if unfilled:
        parts.append(f"{len(unfilled)} layer(s) of the net not filled from them (they keep "
                     f"Caffe's fillers): {', '.join(unfilled)}")
    if ignored:
        parts.append(f"{len(ignored)} layer(s) in them the net does not have (Ignoring "
                     f"source layer): {', '.join(ignored)}")
    message = f"{where}: the weights do not fit the net: {'; '.join(parts)}"
    if strict:
        raise WeightsError(message + " (strict=True)")
    # report_unused < bind (and its no_grad wrapper) < in_step < compile < the caller
    warnings.warn(message, UnusedWeightsWarning, stacklevel=6)


def freeze_params(modules: Sequence[tuple[LayerView, CaffeModule]],
                  net: caffe_pb2.NetParameter) -> None:
    """A blob whose `lr_mult` is 0 in every layer holding it gets no diff in Caffe
    (Net::Init's param_propagate_down; force_backward gives every param one): its
    Parameter does not require grad.  Set it back with requires_grad_(True)."""
    if net.force_backward:
        return
    wanted: dict[int, bool] = {}
    for view, module in modules:
        for k, attr in enumerate(module.caffe_blobs):
            tensor = getattr(module, attr)
            lr = view.param.param[k].lr_mult if k < len(view.param.param) else 1.0
            wanted[id(tensor)] = wanted.get(id(tensor), False) or lr != 0
    for _, module in modules:
        for attr in module.caffe_blobs:
            tensor = getattr(module, attr)
            if isinstance(tensor, torch.nn.Parameter) and tensor.requires_grad \
                    and not wanted[id(tensor)]:
                tensor.requires_grad_(False)


def _adopt_arrays(module: CaffeModule, arrays: Sequence[np.ndarray | None]) -> None:
    for name, array in zip(module.caffe_blobs, arrays):
        if array is None:
            continue  # shared: share_params gives it the owner's tensor
        target = getattr(module, name)
        tensor = torch.from_numpy(array)
        if isinstance(target, torch.nn.Parameter):
            module._parameters[name] = torch.nn.Parameter(tensor, target.requires_grad)
        else:
            module._buffers[name] = tensor


@torch.no_grad()
def copy_into(fitted: Mapping[str, Sequence[np.ndarray | None]],
              tensors: Mapping[str, Sequence[torch.Tensor]]) -> None:
    """The facade's binding: the fitted arrays are copied into the net's own blob tensors
    (in place, as Caffe's CopyFrom overwrites a blob's data)."""
    for name, arrays in fitted.items():
        for tensor, array in zip(tensors.get(name, ()), arrays):
            if array is not None:
                tensor.copy_(torch.from_numpy(np.asarray(array)).view(tensor.shape))


def materialise(module: torch.nn.Module) -> None:
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


def share_params(modules: Sequence[tuple[LayerView, CaffeModule]], where: str) -> None:
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
