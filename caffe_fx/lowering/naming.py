"""Python names for Caffe's blob and layer names: one deterministic, tested rule.

Lowering stage helper.  The rule, applied in net order:
  1. every character outside [A-Za-z0-9_] becomes `_`   ("conv1/7x7_s2" -> "conv1_7x7_s2")
  2. a leading digit (or an empty name, or TorchScript's reserved `__jit` start) gets a
     `_` prefix ("1x1" -> "_1x1")
  3. a Python keyword or builtin, or a name torch.fx or nn.Module reserves (any attribute
     of a GraphModule, `_code`, `training`; any `__dunder__`), gets a `_` suffix
     ("input" -> "input_", "forward" -> "forward_")
  4. a name already taken gets `_` suffixes until it is free (first come keeps the name)
Names like VGG's `conv1_1` are kept as they are; the builder checks that torch.fx kept
every name it was given.  Caffe's own names stay in `node.meta["caffe_blob"]` /
`["caffe_layer"]`.
"""
from __future__ import annotations

import builtins
import keyword
import re

from torch import fx, nn

_ILLEGAL = re.compile(r"[^0-9A-Za-z_]")
_RESERVED = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(
    {"self", "torch", "operator", "math", "fx_pytree", "pytree", "inf", "nan", "NoneType",
     "device", "wrap", "getattr", "output"})
# Every attribute a GraphModule has (its class's and an instance's: `_code`, `_graph`,
# `_lineno_map`, `_tracer_cls`, ...): a submodule of that name would replace it.
_MODULE_ATTRS = frozenset(dir(nn.Module())) | frozenset(dir(fx.GraphModule)) | frozenset(
    dir(fx.GraphModule(nn.Module(), fx.Graph()))) | {"code", "graph", "meta"}


def python_name(caffe_name: str, *, for_module: bool = False) -> str:
    """Steps 1-3 of the rule (no collision handling)."""
    name = _ILLEGAL.sub("_", caffe_name)
    if not name or name[0].isdigit() or name.startswith("__jit"):  # TorchScript's own
        name = "_" + name
    if name in _RESERVED or (for_module and (name in _MODULE_ATTRS or (
            name.startswith("__") and name.endswith("__")))):
        name += "_"
    return name


class Namer:
    """Hands out unique Python names in one namespace (step 4 of the rule)."""

    def __init__(self, *, for_module: bool = False) -> None:
        self._taken: set[str] = set()
        self._for_module = for_module

    def __call__(self, caffe_name: str) -> str:
        name = python_name(caffe_name, for_module=self._for_module)
        while name in self._taken:
            name += "_"
        self._taken.add(name)
        return name
