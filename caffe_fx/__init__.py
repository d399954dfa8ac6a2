"""caffe_fx: Caffe nets as torch.fx GraphModules that compute what Caffe computes.

    import caffe_fx
    gm = caffe_fx.compile("deploy.prototxt", "weights.caffemodel")
    probs = gm(data=images)["prob"]

The names below are imported on first use (PEP 562), so `import caffe_fx` and
`caffe-fx --help` do not import torch; `caffe_fx.compile` and the others work as plain
attributes, and `dir(caffe_fx)` lists them.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from . import errors
    from .compiler import compile
    from .layers import register_layer
    from .lowering.registry import supported_layers
    from .solver import Solver
    from .weights_io import save_caffemodel

__all__ = ["Solver", "__version__", "compile", "errors", "register_layer", "save_caffemodel",
           "supported_layers"]
__version__ = "0.1.0"

from ._threads import choose_spin as _choose_spin  # noqa: E402  (before torch loads libgomp)

_choose_spin()

# Public name -> (module, attribute; None for the module itself).
_LAZY: dict[str, tuple[str, str | None]] = {
    "compile": (".compiler", "compile"),
    "errors": (".errors", None),
    "save_caffemodel": (".weights_io", "save_caffemodel"),
    "supported_layers": (".lowering.registry", "supported_layers"),
    "register_layer": (".layers", "register_layer"),
    "Solver": (".solver", "Solver"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'caffe_fx' has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name, __name__)
    except ModuleNotFoundError as e:
        if e.name != __name__ + module_name:
            raise
        raise AttributeError(f"module 'caffe_fx' has no attribute {name!r} "
                             f"({__name__}{module_name} is not installed)") from e
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    # A name whose module is not there yet (or no more) is left out; only the first
    # component is looked up, which imports nothing.
    present = [n for n, (m, _) in _LAZY.items()
               if importlib.util.find_spec("." + m.split(".")[1], __name__) is not None]
    return sorted(set(globals()) | set(present))
