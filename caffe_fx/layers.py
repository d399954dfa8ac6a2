"""User layers: `caffe_fx.register_layer` and compile()'s `layers=` mapping.

Public front of the lowering registry (lowering/registry.py; Caffe's LayerRegistry and
REGISTER_LAYER_CLASS in src/caffe/layer_factory.cpp).  A layer type is given as one of

- a torch.nn.Module subclass: made with the layer's `LayerView` (`Cls(layer)`), called
  with the bottoms; its parameters are the layer's Caffe blobs (see below);
- an autograd.Function subclass: `Fn.apply(layer, *bottoms)` (its backward returns None
  for `layer`, then one gradient per bottom);
- a function: `fn(layer, *bottoms)`, differentiated by autograd;
- a pycaffe Layer class (caffe_fx.pycaffe.Layer, or any class with setup, reshape, forward
  and backward): set up and run as Caffe's PythonLayer runs it (python_layer.hpp).

It returns one tensor per top (a tuple for several).  `compile(layers=...)` and
`caffe_fx.pycaffe.Net(..., layers=...)` take the shape of caffemodel2pytorch's
`modules=`: {type: factory}, each factory called with the layer's `*_param` as a dict
(caffemodel2pytorch's `param`, with its "inplace" key) and returning a module, a function
of the bottoms, an autograd.Function class (`Fn.apply(*bottoms)`: no layer argument
there, as caffemodel2pytorch calls them), or a pycaffe Layer object.  A "Python" layer
is also matched by its python_param.layer, as caffemodel2pytorch matches it.

Blobs: the module's parameters, in `named_parameters()` order (registration order: a
module that makes `weight` before `bias` holds Caffe's blob 0 and 1), unless it names them
in a `caffe_blobs` tuple of its own (parameter or buffer names, dotted for submodules).
The caffemodel's blobs of the layer replace them; without weights the module keeps its own
initial values (there is no Caffe filler to use).
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from google.protobuf.descriptor import FieldDescriptor
from torch import nn

from .errors import InputError, LayerOverrideWarning, NetDefinitionError
from .lowering.registry import (GENERIC_FIELDS, CaffeModule, LayerSpec, LayerView, builtin,
                                drop_user_spec, lookup, overlaid, user_spec)
from .proto import caffe_pb2
from .proto.dialect_fields import FORK_FIELDS

__all__ = ["LayerView", "LayerOverrideWarning", "layers_overlay", "register_layer",
           "unregister_layer"]

T = TypeVar("T")
Factory = Callable[[Any], Any]


def register_layer(caffe_type: str, impl: Any = None, *, params: Sequence[str] | None = None,
                   bottoms: int | tuple[int, int | None] | None = None,
                   tops: int | tuple[int, int | None] | None = None,
                   is_loss: bool = False) -> Any:
    """Registers `impl` for the Caffe layer type `caffe_type`, for compile() and
    caffe_fx.pycaffe.Net, in this process.  Usable as a decorator:
    `@caffe_fx.register_layer("Normalize")`.  Returns `impl`.

    Args:
        impl: a torch.nn.Module subclass, an autograd.Function subclass, a function or a
            pycaffe Layer class (the module docstring says how each is called).
        params: the LayerParameter fields the layer reads (say "power_param"); any other
            field set in a prototxt is an error naming it.  Default: every field.
        bottoms, tops: an exact count or a (min, max) pair, checked with Caffe's words.
        is_loss: top 0 gets loss_weight 1 unless the prototxt says otherwise, and a
            layer written without tops gets one, as Caffe's loss layers do.

    A type built into caffe_fx is replaced, with a LayerOverrideWarning naming it;
    unregister_layer brings the built-in back.
    """
    if not isinstance(caffe_type, str) or not caffe_type:
        raise InputError(f"register_layer: caffe_type = {caffe_type!r}; allowed: the layer's "
                         "type string as prototxts write it, e.g. 'Normalize'")
    if impl is None:
        def deco(fn: T) -> T:
            register_layer(caffe_type, fn, params=params, bottoms=bottoms, tops=tops,
                           is_loss=is_loss)
            return fn
        return deco
    lower = _lowering(caffe_type, impl, f"register_layer('{caffe_type}', ...)")
    spec = _spec(caffe_type, lower, params, bottoms, tops, is_loss)
    _warn_override(caffe_type, "register_layer", stacklevel=3)
    user_spec(spec)
    return impl


def unregister_layer(caffe_type: str) -> None:
    """Forgets the user layer of `caffe_type` (a built-in type it replaced comes back)."""
    if drop_user_spec(caffe_type) is None:
        raise InputError(f"unregister_layer: no user layer of type '{caffe_type}' is "
                         "registered")


@contextmanager
def layers_overlay(layers: Mapping[str, Factory] | None, where: str = "compile(layers=...)",
                   *, warn: bool = True) -> Iterator[None]:
    """Inside, the `layers=` mapping (caffemodel2pytorch's modules= shape) lowers its
    types, ahead of registered and built-in ones."""
    if not layers:
        yield
        return
    if not isinstance(layers, Mapping):
        raise InputError(f"{where}: layers = {type(layers).__name__}; allowed: a mapping "
                         "{layer type: factory(param)}, as caffemodel2pytorch's modules=")
    specs: dict[str, LayerSpec] = {}
    by_python_class: dict[str, Factory] = {}
    for key, factory in layers.items():
        if not isinstance(key, str) or not callable(factory):
            raise InputError(f"{where}: layers[{key!r}] = {factory!r}; allowed: a type name "
                             "mapped to a callable taking the layer's param dict")
        by_python_class[key] = factory
        specs[key] = _spec(key, _factory_lowering(key, factory, where), None, None, None,
                           False)
        if warn:
            _warn_override(key, where, stacklevel=5)
    python = lookup("Python")
    if python is not None and "Python" not in layers:
        specs["Python"] = _python_by_class(python, by_python_class, where)
    from .lowering.layers.python import mapped_classes

    with overlaid(specs), mapped_classes(by_python_class):
        yield


# --------------------------------------------------------------------------- kinds

def _kind(impl: Any) -> str:
    if isinstance(impl, type):
        if issubclass(impl, nn.Module):
            return "module"
        if issubclass(impl, torch.autograd.Function):
            return "function_class"
        if all(callable(getattr(impl, m, None)) for m in ("setup", "reshape", "forward")):
            return "pycaffe"
        return "unknown"
    if isinstance(impl, nn.Module):
        return "module_object"
    if callable(impl):
        return "function"
    return "unknown"


_ALLOWED = ("a torch.nn.Module subclass, an autograd.Function subclass, a function "
            "fn(layer, *bottoms), or a pycaffe Layer class (setup, reshape, forward, backward)")


def _lowering(caffe_type: str, impl: Any, where: str) -> Callable[[LayerView], Any]:
    kind = _kind(impl)
    if kind == "module":
        return lambda view: UserModule(view, _made(view, lambda: impl(view)))
    if kind == "function_class":
        return lambda view: FunctionModule(view, lambda *b: impl.apply(view, *b))
    if kind == "function":
        return lambda view: FunctionModule(view, lambda *b: impl(view, *b))
    if kind == "pycaffe":
        return lambda view: _pycaffe(view, cls=impl)
    raise InputError(f"{where}: {impl!r} is not a layer; allowed: {_ALLOWED} (an nn.Module "
                     "object too, in layers= factories)")


def _factory_lowering(key: str, factory: Factory, where: str) -> Callable[[LayerView], Any]:
    """A caffemodel2pytorch-style factory: called with the param dict at every lowering."""

    def lower(view: LayerView) -> Any:
        made = _made(view, lambda: factory(param_dict(view)))
        kind = _kind(made)
        if all(callable(getattr(made, m, None)) for m in ("setup", "reshape", "forward")) \
                and not isinstance(made, (type, nn.Module)):
            return _pycaffe(view, obj=made)  # a pycaffe Layer object
        if kind == "module_object":
            return UserModule(view, made)
        if kind == "function_class":
            return FunctionModule(view, made.apply)
        if kind == "function":
            return FunctionModule(view, made)
        raise view.error(f"{where}: layers['{key}'] returned {made!r}; allowed: an "
                         "nn.Module, a function of the bottoms, an autograd.Function class, "
                         "or a pycaffe Layer object", NetDefinitionError)

    return lower


def _python_by_class(python: LayerSpec, factories: Mapping[str, Factory],
                     where: str) -> LayerSpec:
    """"Python" layers whose python_param.layer is a key of `layers=` use that factory
    (nothing imported); the others lower as before."""

    def lower(view: LayerView) -> Any:
        factory = factories.get(view.param.python_param.layer)
        if factory is None:
            return python.fn(view)
        return _factory_lowering(view.param.python_param.layer, factory, where)(view)

    return LayerSpec(python.type, lower, python.params, python.min_bottoms,
                     python.max_bottoms, python.min_tops, python.max_tops, python.auto_top,
                     python.is_loss, python.inplace_ok, python.side_effects)


def _pycaffe(view: LayerView, cls: type | None = None, obj: Any = None) -> CaffeModule:
    from .lowering.layers.python import set_up_layer
    from .pycaffe import python_layer  # noqa: F401  (the runtime pycaffe layers run on)

    return set_up_layer(view, cls=cls, obj=obj)


def _made(view: LayerView, make: Callable[[], T]) -> T:
    """The user's object, made on the CPU (its own initial values are the blobs' when no
    weights are given; the builder's meta device would drop them)."""
    with torch.device("cpu"):
        return make()


# --------------------------------------------------------------------------- modules

class _Hidden:
    """Holds the user's module outside the module tree: its tensors are the wrapper's
    (state_dict keys `layer.weight`, not `layer.impl.weight` twice)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict) -> _Hidden:
        return _Hidden(copy.deepcopy(self.module, memo))


class UserModule(CaffeModule):
    """A user's nn.Module as a Caffe layer: its blobs are this module's parameters (or
    buffers), named after the user's (dots become underscores); forward calls the user's
    module with them (torch.func.functional_call), so loaded weights are what it uses."""

    def __init__(self, view: LayerView, module: nn.Module) -> None:
        super().__init__()
        self._hidden = _Hidden(module)
        self.layer_name = view.name
        self.ntops = len(view.tops)
        names = getattr(module, "caffe_blobs", None)
        own = dict(module.named_parameters()) | dict(module.named_buffers())
        if names is None:
            names = [n for n, _ in module.named_parameters()]
        self.inner_names: tuple[str, ...] = tuple(names)
        attrs: list[str] = []
        for name in self.inner_names:
            if name not in own:
                raise view.error(f"caffe_blobs names {name!r}, which is not a parameter or "
                                 f"buffer of {type(module).__name__}; it has: {list(own)}")
            attr = name.replace(".", "_")
            while attr in attrs or hasattr(nn.Module, attr):
                attr += "_"
            attrs.append(attr)
            tensor = own[name]
            if isinstance(tensor, nn.Parameter):
                self.register_parameter(attr, tensor)
            else:
                self.register_buffer(attr, tensor)
        self.caffe_blobs = tuple(attrs)
        self.fillers = []  # no Caffe filler: the module's own initial values stay

    @property
    def module(self) -> nn.Module:
        """The user's module (its own tensors are the layer's blobs once settled)."""
        return self._hidden.module

    def blobs_settled(self) -> None:
        """Loaded weights are new tensors: the user's module takes them as its own."""
        for name, attr in zip(self.inner_names, self.caffe_blobs):
            owner, _, leaf = name.rpartition(".")
            sub = self.module.get_submodule(owner) if owner else self.module
            slot = sub._parameters if leaf in sub._parameters else sub._buffers
            slot[leaf] = getattr(self, attr)

    def train(self, mode: bool = True) -> UserModule:
        super().train(mode)
        self.module.train(mode)
        return self

    def _apply(self, fn: Callable, recurse: bool = True) -> UserModule:  # type: ignore[override]
        super()._apply(fn, recurse)
        self.module._apply(fn, recurse)
        return self

    def forward(self, *bottoms: torch.Tensor) -> Any:
        tensors = {n: getattr(self, a) for n, a in zip(self.inner_names, self.caffe_blobs)}
        if any(b.is_meta for b in bottoms):  # shape inference
            tensors = {n: t.to("meta") for n, t in tensors.items()}
            try:
                out = torch.func.functional_call(self.module, tensors, tuple(bottoms))
            except Exception:  # noqa: BLE001  (code for real tensors only: run it on zeros)
                zeros = tuple(torch.zeros(b.shape, dtype=b.dtype) for b in bottoms)
                with torch.no_grad():
                    out = torch.func.functional_call(
                        self.module, {n: torch.zeros(t.shape, dtype=t.dtype)
                                      for n, t in tensors.items()}, zeros)
                out = _to_meta(out)
            return _checked(self, out)
        return _checked(self, torch.func.functional_call(self.module, tensors, tuple(bottoms)))


class FunctionModule(CaffeModule):
    """A user's function or autograd.Function as a Caffe layer without blobs."""

    def __init__(self, view: LayerView, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        self.layer_name = view.name
        self.ntops = len(view.tops)

    def forward(self, *bottoms: torch.Tensor) -> Any:
        if any(b.is_meta for b in bottoms):
            try:
                return _checked(self, self.fn(*bottoms))
            except Exception:  # noqa: BLE001  (NumPy code and the like: run it on zeros)
                with torch.no_grad():
                    out = self.fn(*(torch.zeros(b.shape, dtype=b.dtype) for b in bottoms))
                return _checked(self, _to_meta(out))
        return _checked(self, self.fn(*bottoms))


def _to_meta(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return tuple(torch.empty(o.shape, dtype=o.dtype, device="meta") for o in out)
    return torch.empty(out.shape, dtype=out.dtype, device="meta")


def _checked(module: FunctionModule | UserModule, out: Any) -> Any:
    """One tensor per top: a tensor for one top, a tuple or list for several."""
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if module.ntops == 0 and out is None:
        return None
    if len(outs) != module.ntops or not all(isinstance(o, torch.Tensor) for o in outs):
        got = type(out).__name__ if not isinstance(out, (tuple, list)) else \
            f"{type(out).__name__} of {len(outs)}"
        raise NetDefinitionError(
            f"layer '{module.layer_name}': the user layer returned {got}; allowed: one "
            f"tensor per top ({module.ntops}), a tuple for several")
    return outs[0] if len(outs) == 1 else tuple(outs)


# --------------------------------------------------------------------------- specs

def _spec(caffe_type: str, lower: Callable[[LayerView], Any], params: Sequence[str] | None,
          bottoms: Any, tops: Any, is_loss: bool) -> LayerSpec:
    def bounds(spec: Any, what: str) -> tuple[int, int | None]:
        if spec is None:
            return 0, None
        if isinstance(spec, int) and not isinstance(spec, bool) and spec >= 0:
            return spec, spec
        if isinstance(spec, tuple) and len(spec) == 2:
            return spec
        raise InputError(f"register_layer('{caffe_type}'): {what} = {spec!r}; allowed: a "
                         "count, a (min, max) pair (max None: any), or None")

    fields = _all_fields() if params is None else tuple(params)
    known = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    bad = [p for p in fields if p.split(".")[0] not in known]
    if bad:
        raise InputError(f"register_layer('{caffe_type}'): params = {bad} are not "
                         "LayerParameter fields; allowed: names such as 'convolution_param' "
                         "(a fork's fields need caffe_proto= or the bundled dialects)")
    bmin, bmax = bounds(bottoms, "bottoms")
    tmin, tmax = bounds(tops, "tops")
    if is_loss:
        tmin = max(tmin, 1) if tops is not None else 1
    return LayerSpec(caffe_type, lower, fields, bmin, bmax, tmin, tmax, auto_top=is_loss,
                     is_loss=is_loss)


def _all_fields() -> tuple[str, ...]:
    """Every LayerParameter field, and the fork fields inside them (a user layer reads
    what it likes)."""
    out: list[str] = []
    for fd in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if fd.name in GENERIC_FIELDS:
            continue
        out.append(fd.name)
        if fd.message_type is not None:
            out += [f"{fd.name}.{sub.name}" for sub in fd.message_type.fields
                    if sub.full_name in FORK_FIELDS]
    return tuple(out)


def _warn_override(caffe_type: str, who: str, stacklevel: int) -> None:
    if builtin(caffe_type) is not None:
        warnings.warn(f"{who}: layer type '{caffe_type}' is built into caffe_fx; the user "
                      f"layer given for it replaces caffe_fx's {caffe_type} "
                      "(unregister_layer brings it back)", LayerOverrideWarning,
                      stacklevel=stacklevel)


def param_dict(view: LayerView) -> dict[str, Any]:
    """caffemodel2pytorch's `param`: the layer's first set `*_param` as a dict (enums as
    ints, repeated fields as lists, sub-messages as dicts), with "inplace" added."""
    message = next((v for f, v in view.param.ListFields() if f.name.endswith("_param")), None)
    out = _to_dict(message) if message is not None else {}
    out["inplace"] = len(view.bottoms) == 1 and list(view.bottoms) == list(view.tops)
    return out


def _to_dict(message: Any) -> dict[str, Any]:
    def value(fd: FieldDescriptor, v: Any) -> Any:
        return _to_dict(v) if fd.type == FieldDescriptor.TYPE_MESSAGE else v

    return {fd.name: [value(fd, x) for x in v] if fd.is_repeated else value(fd, v)
            for fd, v in message.ListFields()}
