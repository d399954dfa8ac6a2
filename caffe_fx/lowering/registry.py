"""The layer registry: one small function per Caffe layer type.

Lowering stage.  A layer function is registered under the exact Caffe type string and
gets a read-only `LayerView` of one layer; it returns a `Call` (a parameter-free torch
function with literal arguments), a `CaffeModule` (a layer with blobs), or `IDENTITY`
(tops alias bottoms, e.g. Split, TEST-phase Dropout).  It never names nodes, wires the
graph or looks at other layers: that is the builder's job (lowering/builder.py).
Mirrors Caffe's LayerRegistry (src/caffe/layer_factory.cpp).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

import torch
from torch import nn

from ..errors import CaffeFxError, NetDefinitionError, UnsupportedFieldError
from ..proto import caffe_pb2
from ..proto.dialect_fields import FORK_FIELDS

Shape = tuple[int, ...]

# LayerParameter fields every layer may carry; the builder or the solver handle them.
GENERIC_FIELDS = frozenset({
    "name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs",
    "propagate_down", "include", "exclude",
})


@dataclass(frozen=True)
class LayerView:
    """What a layer function may look at: one layer, never its neighbours."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    param: caffe_pb2.LayerParameter  # a private copy; treat as read-only
    phase: int  # caffe_pb2.TRAIN or caffe_pb2.TEST, after the per-layer override
    input_shapes: tuple[Shape, ...]

    def fail(self, field_path: str, value: Any, allowed: str) -> UnsupportedFieldError:
        """An error naming this layer, the field, its value and what is allowed."""
        return UnsupportedFieldError(
            f"layer '{self.name}' ({self.type}): {field_path} = {value} is not supported; "
            f"supported: {allowed}"
        )

    def error(self, message: str, cls: type[CaffeFxError] = NetDefinitionError) -> CaffeFxError:
        """An error naming this layer (a NetDefinitionError unless `cls` says otherwise)."""
        return cls(f"layer '{self.name}' ({self.type}): {message}")

    @property
    def is_train(self) -> bool:
        return self.phase == caffe_pb2.TRAIN


@dataclass(frozen=True)
class Call:
    """A parameter-free layer: `fn(*bottoms, **kwargs)`; tuple result for several tops.

    `packed`: the bottoms go in as one list, `fn([b0, b1, ...], **kwargs)` (torch.cat).
    """

    fn: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    packed: bool = False


class _Identity:
    def __repr__(self) -> str:
        return "IDENTITY"


IDENTITY = _Identity()  # every top aliases the bottom at the same index (or bottom 0)


class CaffeModule(nn.Module):
    """A layer with learnable or stored blobs.

    `caffe_blobs` names the parameters/buffers in Caffe's blob order, so that weight
    loading, `state_dict()` and pycaffe's `net.params[layer][i]` agree; `fillers` holds
    the FillerParameter of each blob (used when no weights are given).
    """

    caffe_blobs: tuple[str, ...] = ()
    # Compile-time bookkeeping, not used by forward: kept out of TorchScript.
    __jit_ignored_attributes__ = ["caffe_blobs", "fillers"]

    def __init__(self) -> None:
        super().__init__()
        self.fillers: list[caffe_pb2.FillerParameter | None] = []

    def blob_tensors(self) -> list[torch.Tensor]:
        return [getattr(self, n) for n in self.caffe_blobs]

    def blobs_settled(self) -> None:
        """Called by compile() once weights are loaded (the blobs may be new tensors)."""


Lowered = Union[Call, CaffeModule, _Identity]
LayerFn = Callable[[LayerView], Lowered]


@dataclass(frozen=True)
class LayerSpec:
    type: str
    fn: LayerFn
    params: tuple[str, ...]  # the LayerParameter sub-messages the function reads
    min_bottoms: int = 0
    max_bottoms: int | None = None
    min_tops: int = 0
    max_tops: int | None = None
    auto_top: bool = False  # loss layers: Caffe creates a top when none is given
    is_loss: bool = False  # default loss_weight 1 on top 0
    inplace_ok: bool = True
    side_effects: bool = False  # runs user code: kept (and run) even when no blob needs it
    fork: str | None = None  # the Caffe fork whose semantics it follows; None: BVLC Caffe


_REGISTRY: dict[str, LayerSpec] = {}


def register(
    caffe_type: str,
    *,
    params: Sequence[str] = (),
    bottoms: int | tuple[int, int | None] | None = None,
    tops: int | tuple[int, int | None] | None = None,
    auto_top: bool = False,
    is_loss: bool = False,
    inplace_ok: bool = True,
    side_effects: bool = False,
    fork: str | None = None,
) -> Callable[[LayerFn], LayerFn]:
    """Registers `fn` for `caffe_type`; refuses duplicates.

    `fork`: for a type BVLC Caffe lacks, the fork ("owner/repo" on GitHub) whose
    definition and numbers it follows (the README's layer table shows it).

    `bottoms`/`tops`: an exact count, a (min, max) pair (max None = unbounded), or
    None for no check.  `params`: LayerParameter fields the function handles, and, as
    dotted paths ("dropout_param.scale_train"), the fork fields (dialects.proto) inside
    them that it handles; any other fork field set in them is refused (field_problems).
    """

    def bounds(spec: int | tuple[int, int | None] | None) -> tuple[int, int | None]:
        if spec is None:
            return 0, None
        if isinstance(spec, int):
            return spec, spec
        return spec

    def deco(fn: LayerFn) -> LayerFn:
        if caffe_type in _REGISTRY:
            raise RuntimeError(f"layer type {caffe_type!r} registered twice")
        for p in params:
            if _field_at(p) is None:
                raise RuntimeError(f"{caffe_type}: {p!r} is not a LayerParameter field")
        bmin, bmax = bounds(bottoms)
        tmin, tmax = bounds(tops)
        _REGISTRY[caffe_type] = LayerSpec(caffe_type, fn, tuple(params), bmin, bmax, tmin, tmax,
                                          auto_top, is_loss, inplace_ok, side_effects, fork)
        return fn

    return deco


def lookup(caffe_type: str) -> LayerSpec | None:
    """The spec lowering `caffe_type`: a per-call one (compile(layers=...)) first, then
    one registered by caffe_fx.register_layer, then the built-in one."""
    _load_layers()
    overlay = _OVERLAY.get()
    if overlay is not None and caffe_type in overlay:
        return overlay[caffe_type]
    return _USER.get(caffe_type) or _REGISTRY.get(caffe_type)


def top_loss_weights(layer: caffe_pb2.LayerParameter) -> list[float]:
    """Layer::SetLossWeights: explicit loss_weight per top, else 1 on top 0 of loss layers."""
    if layer.loss_weight:
        return [float(layer.loss_weight[j]) if j < len(layer.loss_weight) else 0.0
                for j in range(len(layer.top))]
    spec = lookup(layer.type)
    return [1.0 if spec is not None and spec.is_loss and j == 0 else 0.0
            for j in range(len(layer.top))]


# User layers (caffe_fx/layers.py): registered for the process, and per call.  Kept apart
# from _REGISTRY so that a built-in type a user overrides comes back when unregistered.
_USER: dict[str, LayerSpec] = {}
_OVERLAY: ContextVar[Mapping[str, LayerSpec] | None] = ContextVar(
    "caffe_fx_layer_overlay", default=None)


def builtin(caffe_type: str) -> LayerSpec | None:
    """The built-in spec of `caffe_type`, whatever users registered over it."""
    _load_layers()
    return _REGISTRY.get(caffe_type)


def user_spec(spec: LayerSpec) -> None:
    """Registers a user's layer for the process (replacing any earlier user spec)."""
    _USER[spec.type] = spec


def drop_user_spec(caffe_type: str) -> LayerSpec | None:
    return _USER.pop(caffe_type, None)


@contextmanager
def overlaid(specs: Mapping[str, LayerSpec] | None) -> Iterator[None]:
    """Inside, lookup() answers from `specs` first (compile()'s `layers=`)."""
    if not specs:
        yield
        return
    merged = dict(_OVERLAY.get() or {})
    merged.update(specs)
    token = _OVERLAY.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _OVERLAY.reset(token)


def auto_tops(caffe_type: str) -> int:
    """How many tops Net::AppendTop creates for a layer of this type written without
    tops: max(MinTopBlobs, ExactNumTopBlobs) when AutoTopBlobs() (loss layers), else 0.
    Passed to the frontend and passes that need it, which do not import the lowering."""
    spec = lookup(caffe_type)
    return max(spec.min_tops, 1) if spec is not None and spec.auto_top else 0


def supported_layers() -> list[str]:
    """The Caffe layer types caffe_fx can lower, sorted as caffe.layer_type_list() is."""
    _load_layers()
    return sorted(set(_REGISTRY) | set(_USER) | set(_OVERLAY.get() or ()))


def _field_at(path: str) -> Any:
    """The FieldDescriptor of a dotted path from LayerParameter, or None."""
    desc: Any = caffe_pb2.LayerParameter.DESCRIPTOR
    fd = None
    for part in path.split("."):
        if desc is None or part not in desc.fields_by_name:
            return None
        fd = desc.fields_by_name[part]
        desc = fd.message_type
    return fd


def _fork_note(fd: Any) -> str:
    fork = FORK_FIELDS.get(fd.full_name)
    return f" (a field of the fork {fork[0]})" if fork else ""


def field_problems(view: LayerView, spec: LayerSpec) -> list[str]:
    """The fork fields (dialects.proto) a layer does not handle: a fork parameter its type
    does not read, or a fork field inside a parameter it reads that it does not declare.
    Never ignored: the fork's layer may read them.  One line per field, naming the layer."""
    who = f"layer '{view.name}' ({view.type})"
    reads = [p for p in spec.params if "." not in p]
    out: list[str] = []
    for fd, value in view.param.ListFields():
        if fd.name in GENERIC_FIELDS:
            continue
        if fd.name in spec.params:
            out += _fork_subfields(who, fd.name, value, spec)
        elif fd.full_name in FORK_FIELDS:
            out.append(f"{who}: {fd.name}{_fork_note(fd)} is set, but caffe_fx's {spec.type} "
                       f"does not read it; allowed: {', '.join(reads) or 'no parameters'}")
    return out


def ignored_fields(view: LayerView, spec: LayerSpec) -> list[str]:
    """The LayerParameter fields of Caffe's own schema set in the prototxt that this layer
    type does not read, as Caffe's layer does not (py-faster-rcnn's ZF test nets give a
    Softmax a loss_param): ignored, as Caffe ignores them, and said (compile() warns).
    Fork fields are field_problems instead."""
    who = f"layer '{view.name}' ({view.type})"
    reads = [p for p in spec.params if "." not in p]
    return [f"{who}: {fd.name} (it reads: {', '.join(reads) or 'none'})"
            for fd, _ in view.param.ListFields()
            if fd.name not in GENERIC_FIELDS and fd.name not in spec.params
            and fd.full_name not in FORK_FIELDS]


def _fork_subfields(who: str, path: str, msg: Any, spec: LayerSpec) -> list[str]:
    out: list[str] = []
    if not hasattr(msg, "ListFields"):
        return out
    for fd, value in msg.ListFields():
        here = f"{path}.{fd.name}"
        if fd.full_name in FORK_FIELDS and here not in spec.params:
            out.append(f"{who}: {here} = {value}{_fork_note(fd)} is not supported by "
                       f"caffe_fx's {spec.type}; allowed: leave it unset")
        elif fd.message_type is not None:
            for v in (value if fd.is_repeated else [value]):
                out += _fork_subfields(who, here, v, spec)
    return out


_LOADED = False


def _load_layers() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import layers  # noqa: F401  (registers every layer module)
