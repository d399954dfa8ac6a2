"""`CAFFE_FX_AS_CAFFE=1`: in every new interpreter, `import caffe` gives caffe_fx.pycaffe.

pycaffe facade, interpreter-start half of pycaffe/shim.py (BVLC python/caffe/ layout).
caffe_fx_as_caffe.pth, installed next to the package, loads this file by path when the
variable is set: stdlib only, so neither caffe_fx nor torch is imported at start.  The
first `import caffe` then calls shim.install() and hands back the facade.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

# The finder and loader are duck-typed: importing importlib.abc (it pulls in
# importlib.resources) would cost milliseconds at every interpreter start.

ENV = "CAFFE_FX_AS_CAFFE"
ON = ("1", "true", "yes", "on")
OFF = ("", "0", "false", "no", "off")


def requested(value: str | None) -> bool | None:
    """Whether a value of CAFFE_FX_AS_CAFFE asks for the facade (None: not understood).
    Case and surrounding blanks are ignored; unset is off."""
    word = (value or "").strip().lower()
    return True if word in ON else False if word in OFF else None


class _FacadeLoader:
    """Loads `caffe` by installing the shim's aliases: the placeholder module the import
    system made is dropped from sys.modules, and the import returns sys.modules["caffe"],
    which install() has pointed at caffe_fx.pycaffe."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        if sys.modules.get(module.__name__) is module:
            del sys.modules[module.__name__]  # install() refuses any other `caffe`
        try:
            shim = importlib.import_module("caffe_fx.pycaffe.shim")
        except Exception as e:  # a broken install may raise anything; say what `caffe` is
            raise ImportError(
                f"{ENV}={os.environ.get(ENV, '')!r} makes `import caffe` give caffe_fx.pycaffe, "
                f"which failed to import: {type(e).__name__}: {e}", name="caffe") from e
        shim.install()


class _FacadeFinder:
    """Put ahead of the path finders, so it wins over a real caffe on sys.path.  Answers only
    for the top-level `caffe`: Python imports `caffe` before any `caffe.X`, and once it
    is the facade, shim.py answers for the submodules."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "caffe":
            return None
        return importlib.machinery.ModuleSpec(
            "caffe", _LOADER, origin=f"caffe_fx.pycaffe ({ENV})")  # type: ignore[arg-type]


_LOADER = _FacadeLoader()
FINDER = _FacadeFinder()


def startup() -> None:
    """Run by caffe_fx_as_caffe.pth at interpreter start.  Installs FINDER when the
    variable is on; an unknown value gets one line on stderr and changes nothing."""
    value = os.environ.get(ENV)
    wanted = requested(value)
    if wanted is None:
        sys.stderr.write(
            f"caffe_fx: {ENV}={value!r} is not understood (on: {', '.join(ON)}; off: unset, "
            f"empty, {', '.join(OFF[1:])}); `import caffe` is left alone\n")
    elif wanted and FINDER not in sys.meta_path:
        sys.meta_path.insert(0, FINDER)
