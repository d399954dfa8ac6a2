"""Caffe's "Python" layer type: refused unless trusted; when trusted, its class is imported.

Lowering.  Mirrors layer_factory.cpp's GetPythonLayer (python_param.module imported as
the user's sys.path finds it, python_param.layer looked up in it).  The pipeline decides
the trust: compile(trust_python_layers=True) and caffe_fx.pycaffe's Net build inside
`trusted(...)`; anywhere else a Python layer is refused by name, and nothing is imported.
The layer object, the Blobs its code reads and writes and the module that runs it belong
to caffe_fx.pycaffe (python_layer.py): user layers are written against pycaffe's
caffe.Layer and caffe.Blob, so importing one imports caffe_fx.pycaffe, which hands its
runtime to `set_runtime` here (the lowering never imports the facade).
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

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


def refuse_untrusted(net: caffe_pb2.NetParameter, where: str) -> None:
    """Every Python layer of the net at once, when the caller did not trust them."""
    python = [layer for layer in net.layer if layer.type == "Python"]
    if python:
        names = ", ".join(f"'{layer.name}' (python_param.module = "
                          f"'{layer.python_param.module}')" for layer in python)
        if CALLER.get() == "cli":
            how = ("which caffe-fx never runs; to trust them, load the net in Python: "
                   "caffe_fx.compile(NET, trust_python_layers=True) or caffe_fx.pycaffe.Net "
                   "(both import python_param.module from sys.path, as pycaffe does)")
        else:
            how = ("which compile() never does unless told: pass trust_python_layers=True, "
                   "or use caffe_fx.pycaffe.Net (which imports them, as pycaffe does)")
        raise UnsupportedFieldError(f"{where}: Python layers {names} run user code, {how}")


def _import_class(view: LayerView) -> type:
    p = view.param.python_param
    try:
        module = importlib.import_module(p.module)
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
    module = layers.get(view.name)
    if module is None:
        cls = _import_class(view)
        module = _runtime(view).set_up(view, cls)
        layers[view.name] = module
    else:
        module = _runtime(view).reshape(module, view)
    return module
