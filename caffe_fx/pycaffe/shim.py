"""`import caffe` for unchanged pycaffe code: module aliases onto caffe_fx.pycaffe.

pycaffe facade.  Mirrors the module layout of BVLC python/caffe/ (caffe, caffe.io,
caffe.net_spec, caffe.coord_map, caffe.proto.caffe_pb2, caffe.pycaffe, ...: ALIASES) by
registering `sys.modules` entries.  `python -m caffe_fx.pycaffe.run SCRIPT` (run.py) installs them and then runs a
script as `python SCRIPT` would; with CAFFE_FX_AS_CAFFE=1 (../_caffe_env.py) every
interpreter installs them at its first `import caffe`.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

from ..errors import CaffeAliasError

# `caffe.<name>` -> the module of caffe_fx standing in for it.
ALIASES: dict[str, str] = {
    "caffe": "caffe_fx.pycaffe",
    "caffe.io": "caffe_fx.pycaffe.io",
    "caffe.net_spec": "caffe_fx.pycaffe.net_spec",
    "caffe.pycaffe": "caffe_fx.pycaffe",  # real pycaffe.py holds Net and the solvers
    "caffe.proto": "caffe_fx.proto",
    "caffe.proto.caffe_pb2": "caffe_fx.proto.caffe_pb2",
    "caffe.draw": "caffe_fx.pycaffe.draw",
    "caffe.classifier": "caffe_fx.pycaffe.classifier",
    "caffe.detector": "caffe_fx.pycaffe.detector",
    "caffe.coord_map": "caffe_fx.pycaffe.coord_map",
}


class _RefuseOtherSubmodules(importlib.abc.MetaPathFinder):
    """`caffe` is caffe_fx/pycaffe/ once aliased, so Python would load any other
    `caffe.X` from that folder a second time under a wrong name; refuse instead."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("caffe.") or not installed():
            return None
        provided = ", ".join(sorted(ALIASES))
        raise CaffeAliasError(
            f"No module named {fullname!r}: `caffe` is caffe_fx.pycaffe here "
            f"(caffe_fx.pycaffe.install()), which provides: {provided}", name=fullname)


_FINDER = _RefuseOtherSubmodules()


def installed() -> bool:
    """Whether `import caffe` currently gives caffe_fx.pycaffe."""
    return sys.modules.get("caffe") is sys.modules.get("caffe_fx.pycaffe") is not None


def install() -> ModuleType:
    """Makes `import caffe`, `import caffe.io`, `from caffe import layers as L, params as P`,
    `from caffe.proto import caffe_pb2` (and the other names of ALIASES) give caffe_fx's
    modules in this process.  Idempotent; returns the `caffe` module.

    Raises CaffeAliasError if a real `caffe` (or any module under that name) is already
    imported: two Caffes in one process would silently mix their objects."""
    facade = importlib.import_module("caffe_fx.pycaffe")
    taken = {name: sys.modules[name] for name in ALIASES if name in sys.modules}
    for name, module in taken.items():
        if module is not importlib.import_module(ALIASES[name]):
            where = getattr(module, "__file__", None) or repr(module)
            raise CaffeAliasError(
                f"cannot alias `{name}` to {ALIASES[name]}: a different module `{name}` is "
                f"already imported (from {where}); call caffe_fx.pycaffe.install() before "
                "anything imports the real caffe, run the script with "
                "`python -m caffe_fx.pycaffe.run SCRIPT`, or set CAFFE_FX_AS_CAFFE=1",
                name=name)
    others = sorted(n for n in sys.modules if n.startswith("caffe.") and n not in ALIASES)
    if others:
        raise CaffeAliasError(
            f"cannot alias `caffe` to caffe_fx.pycaffe: modules of another caffe are already "
            f"imported: {others}", name=others[0])
    for name, target in ALIASES.items():
        sys.modules[name] = importlib.import_module(target)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    return facade
