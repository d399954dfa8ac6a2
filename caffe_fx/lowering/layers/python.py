"""Caffe's "Python" layer type: refused unless trusted; when trusted, its class is imported.

Lowering.  Mirrors layer_factory.cpp's GetPythonLayer (python_param.module imported as
the user's sys.path finds it, python_param.layer looked up in it).  The pipeline decides
the trust: compile(trust_python_layers=True) and caffe_fx.pycaffe's Net build inside
`trusted(...)`; anywhere else a Python layer is refused by name, and nothing is imported.
The layer object, the Blobs its code reads and writes and the module that runs it belong
to caffe_fx.pycaffe (python_layer.py): user layers are written against pycaffe's
caffe.Layer and caffe.Blob, so importing one imports caffe_fx.pycaffe, which hands its
runtime to `set_runtime` here (the lowering never imports the facade).  A layer module
that does `import caffe` where no caffe is importable gets caffe_fx.pycaffe under that
name (pycaffe/shim.py's install()).  Python layers without bottoms are data layers: in
compile() and the CLI their tops become inputs (builder.is_source) and nothing is
imported; caffe_fx.pycaffe's Net runs them (python_sources(False)).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from ...errors import CALLER, NetDefinitionError, UnsupportedFieldError
from ...proto import caffe_pb2
from ..registry import CaffeModule, LayerView, register


class Runtime(Protocol):
    """What runs Python layers (caffe_fx.pycaffe.python_layer provides it)."""

    def set_up(self, view: LayerView, cls: type) -> CaffeModule:
        """Layer::SetUp: the object made from `cls`, param_str and phase set, setup and
        reshape run on zero bottoms of the view's shapes; its module, on meta tensors."""
        ...

    def reshape(self, module: CaffeModule, view: LayerView) -> CaffeModule:
        """Net::Reshape: the same layer object reshapes to the view's bottom shapes."""
        ...

    def set_up_object(self, view: LayerView, layer: Any) -> CaffeModule:
        """Layer::SetUp of an object already made (param_str and phase set, setup, reshape)."""
        ...


_RUNTIME: list[Runtime] = []

# While a trusted build runs: the Python layers set up so far (layer name -> module), so
# that rebuilding at new input shapes reshapes the same object, as Caffe does.
_TRUSTED: ContextVar[dict[str, CaffeModule] | None] = ContextVar(
    "caffe_fx_trusted_python_layers", default=None)


def set_runtime(runtime: Runtime) -> None:
    _RUNTIME[:] = [runtime]


@contextmanager
def trusted(layers: dict[str, CaffeModule]) -> Iterator[None]:
    """Inside, Python layers are imported and set up (once each, kept in `layers`)."""
    token = _TRUSTED.set(layers)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


# Whether Python layers without bottoms (data layers: OICR's RoIDataLayer, FCN's
# VOCSegDataLayer) become inputs, as Data layers do: in compile() and the CLI, yes (their
# code is never imported); caffe_fx.pycaffe's Net and caffe_fx.Solver run them, as pycaffe
# does (they read their batches).
PYTHON_SOURCES: ContextVar[bool] = ContextVar("caffe_fx_python_sources", default=True)


def is_python_source(layer: caffe_pb2.LayerParameter) -> bool:
    """A Python layer without bottoms, while such layers become inputs: not where the net
    reads its own batches (caffe_fx.pycaffe.Net, caffe_fx.Solver: READS_BATCHES), whose
    trusted Python data layers run as pycaffe runs them."""
    if layer.type != "Python" or layer.bottom or not PYTHON_SOURCES.get():
        return False
    from ...data.top_shapes import READS_BATCHES

    return not READS_BATCHES.get()


@contextmanager
def python_sources(on: bool) -> Iterator[None]:
    token = PYTHON_SOURCES.set(on)
    try:
        yield
    finally:
        PYTHON_SOURCES.reset(token)


# python_param.layer names that compile(layers=...) maps to a factory: those layers are
# the caller's code, not python_param.module's, so trust is not asked for them.
_MAPPED: ContextVar[frozenset[str]] = ContextVar("caffe_fx_mapped_python", default=frozenset())


@contextmanager
def mapped_classes(names: Iterable[str]) -> Iterator[None]:
    token = _MAPPED.set(_MAPPED.get() | frozenset(names))
    try:
        yield
    finally:
        _MAPPED.reset(token)


# What a CLI command says instead of its --trust-python-layers advice (caffe-fx export,
# whose programs cannot hold a Python layer's code).
UNTRUSTED_ADVICE: ContextVar[str | None] = ContextVar("caffe_fx_untrusted_advice",
                                                      default=None)


def refuse_untrusted(net: caffe_pb2.NetParameter, where: str) -> None:
    """Every Python layer of the net at once, when the caller did not trust them (data
    layers that become inputs, and layers compile(layers=...) maps by class, excepted:
    nothing of python_param.module runs)."""
    mapped = _MAPPED.get()
    python = [layer for layer in net.layer
              if layer.type == "Python" and not is_python_source(layer)
              and layer.python_param.layer not in mapped]
    if python:
        names = ", ".join(f"'{layer.name}' (python_param.module = "
                          f"'{layer.python_param.module}')" for layer in python)
        if UNTRUSTED_ADVICE.get() is not None:
            how = str(UNTRUSTED_ADVICE.get())
        elif CALLER.get() == "cli":
            how = ("which caffe-fx runs only when told: pass --trust-python-layers (it "
                   "imports python_param.module from sys.path, i.e. PYTHONPATH, as caffe "
                   "built WITH_PYTHON_LAYER does)")
        else:
            how = ("which compile() never does unless told: pass trust_python_layers=True, "
                   "or use caffe_fx.pycaffe.Net (which imports them, as pycaffe does)")
        raise UnsupportedFieldError(f"{where}: Python layers {names} run user code, {how}")


def refuse_unimportable(net: caffe_pb2.NetParameter, where: str) -> None:
    """In a trusted build, every Python layer whose python_param.module cannot be
    imported, in one error (faster R-CNN's train net needs three of its authors' modules:
    each is named, not only the first the build reaches)."""
    mapped = _MAPPED.get()
    problems: list[str] = []
    for layer in net.layer:
        if layer.type != "Python" or is_python_source(layer) \
                or layer.python_param.layer in mapped:
            continue
        module = layer.python_param.module
        try:
            _import_with_caffe(module)
        except ImportError as e:
            problems.append(f"layer '{layer.name}' (Python): python_param.module = "
                            f"'{module}' cannot be imported ({e})")
    if problems:
        raise NetDefinitionError(f"{where}: " + "; ".join(problems)
                                 + "; allowed: a module on sys.path (PYTHONPATH)")


def _import_class(view: LayerView) -> type:
    p = view.param.python_param
    try:
        module = _import_with_caffe(p.module)
    except ImportError as e:
        raise NetDefinitionError(
            f"layer '{view.name}' (Python): python_param.module = '{p.module}' cannot be "
            f"imported ({e}); allowed: a module on sys.path (PYTHONPATH)") from e
    cls = getattr(module, p.layer, None)
    if cls is None:
        raise NetDefinitionError(
            f"layer '{view.name}' (Python): python_param.layer = '{p.layer}' is not defined "
            f"in module '{p.module}' ({getattr(module, '__file__', '?')})")
    return cls


def _import_with_caffe(name: str) -> Any:
    """import_module(name); a module that does `import caffe` where no `caffe` can be
    imported gets caffe_fx.pycaffe under that name (caffe_fx.pycaffe.install(), which
    stays for the process: the layer's methods may import caffe again).  A real pycaffe
    on sys.path, or a `caffe` already imported, is never shadowed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != "caffe" or "caffe" in sys.modules or _findable("caffe"):
            raise
    from ...pycaffe import shim  # the facade, as `caffe`

    shim.install()
    return importlib.import_module(name)


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def set_up_layer(view: LayerView, cls: type | None = None, obj: Any = None) -> CaffeModule:
    """A pycaffe-style layer (a class, or an object already made) set up on the runtime:
    once per layer name in a trusted build (rebuilds reshape the same object), else anew."""
    layers = _TRUSTED.get()
    module = layers.get(view.name) if layers is not None else None
    runtime = _runtime(view)
    if module is not None:
        return runtime.reshape(module, view)
    module = runtime.set_up(view, cls) if obj is None else runtime.set_up_object(view, obj)
    if layers is not None:
        layers[view.name] = module
    return module


def _runtime(view: LayerView) -> Runtime:
    if not _RUNTIME:
        p = view.param.python_param
        raise NetDefinitionError(
            f"layer '{view.name}' (Python): python_param.layer = '{p.layer}' of module "
            f"'{p.module}' needs caffe_fx.pycaffe, whose caffe.Layer and caffe.Blob Python "
            "layers run on; allowed: a caffe.Layer subclass from `import caffe_fx.pycaffe "
            "as caffe` (or `import caffe` with CAFFE_FX_AS_CAFFE=1)")
    return _RUNTIME[0]


@register("Python", params=("python_param",), side_effects=True)
def python(view: LayerView) -> CaffeModule:
    layers = _TRUSTED.get()
    p = view.param.python_param
    if layers is None:
        raise UnsupportedFieldError(
            f"layer '{view.name}' (Python): python_param.module = '{p.module}', layer = "
            f"'{p.layer}': Python layers run only in caffe_fx.pycaffe.Net, which imports the "
            "module and runs the layer's code, or in caffe_fx.compile(..., "
            "trust_python_layers=True)")
    if view.name in layers:
        return set_up_layer(view)
    return set_up_layer(view, _import_class(view))
