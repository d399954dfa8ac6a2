"""The drop-in module of an OICR checkout on caffe_fx: `import caffe` gives caffe_fx.pycaffe.

examples/oicr: port.py copies this file into the checkout's tools/ and puts
`import caffe_fx_oicr` first in tools/train_net.py, test_net.py, reval.py and
reval_discovery.py, so OICR's scripts (and the Python layers their nets load) run on PyTorch
unchanged.  What real pycaffe (python/caffe/__init__.py of ppengtang/caffe) gives those
scripts and a plain caffe_fx.pycaffe does not, this module adds:

- `caffe.set_mode_gpu()`, which OICR calls unconditionally, uses CUDA when torch has it and
  otherwise falls back to the CPU with one line on stderr (caffe_fx.pycaffe itself refuses
  GPU mode without CUDA).  CAFFE_FX_OICR_DEVICE=cpu keeps the CPU even where CUDA exists.
- CAFFE_FX_OICR_SEED=N seeds NumPy's global generator (RoIDataLayer's shuffle and
  sampling) and caffe.set_random_seed (fillers, Dropout) at import, for repeatable runs:
  OICR's train_net.py, unlike Fast R-CNN's, seeds neither.
- The solver's log lines (glog's `Iteration N, loss = ...` on stderr) are printed, as
  glog prints them, unless GLOG_minloglevel is 1 or more.
"""
from __future__ import annotations

import logging
import os
import sys

import caffe_fx.pycaffe as _pycaffe
from caffe_fx.errors import DeviceError, InputError

caffe = _pycaffe.install()  # sys.modules["caffe"] is caffe_fx.pycaffe from here on

_set_mode_gpu = _pycaffe.set_mode_gpu
_said: list[str] = []


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def set_mode_gpu() -> None:
    """Caffe::set_mode(GPU) where torch has CUDA (and CAFFE_FX_OICR_DEVICE is not `cpu`),
    else Caffe::set_mode(CPU), said once on stderr."""
    wanted = os.environ.get("CAFFE_FX_OICR_DEVICE", "").strip().lower()
    if wanted not in ("", "cpu", "gpu", "cuda"):
        raise DeviceError(
            f"CAFFE_FX_OICR_DEVICE={wanted!r} is not understood; allowed: cpu, gpu (or unset)")
    if wanted != "cpu" and _cuda():
        _set_mode_gpu()
        return
    why = "CAFFE_FX_OICR_DEVICE=cpu" if wanted == "cpu" else "torch has no CUDA device"
    if not _said:
        sys.stderr.write(f"caffe_fx: set_mode_gpu(): {why}; running on the CPU\n")
        _said.append(why)
    _pycaffe.set_mode_cpu()


_pycaffe.set_mode_gpu = set_mode_gpu


class _GlogLines(logging.Handler):
    """The solver's messages on stderr, one line each, as pycaffe's glog prints them."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(record.getMessage() + "\n")
        sys.stderr.flush()


def _show_solver_log() -> None:
    try:
        level = int(os.environ.get("GLOG_minloglevel", "0"))
    except ValueError:
        level = 0
    log = logging.getLogger("caffe_fx.solver")
    if level < 1 and not log.handlers:
        log.addHandler(_GlogLines())
        log.setLevel(logging.INFO)
        log.propagate = False


_show_solver_log()


def _seed() -> None:
    value = os.environ.get("CAFFE_FX_OICR_SEED", "").strip()
    if not value:
        return
    try:
        seed = int(value)
    except ValueError:
        raise InputError(f"CAFFE_FX_OICR_SEED={value!r} is not understood; allowed: an "
                          "integer (or unset)") from None
    import numpy as np

    np.random.seed(seed)
    _pycaffe.set_random_seed(seed)


_seed()
