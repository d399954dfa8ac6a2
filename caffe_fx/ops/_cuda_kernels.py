"""Finds, compiles and launches the CUDA sources in kernels/ (one per custom op).

Ops stage, shared by ops/roi_pool.py and ops/psroi_pool.py.  A source lives in the
source checkout's kernels/ folder and, installed, in caffe_fx/kernels/ (setup.py's build_py
copies it there).  It is compiled at run time by CuPy's RawModule (NVRTC), the optional
`cuda` extra, and launched on torch's current CUDA stream.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingDependencyError

_PACKAGE = Path(__file__).resolve().parent.parent  # caffe_fx/


def kernel_dirs() -> tuple[Path, ...]:
    """Where a kernel source may be: installed (caffe_fx/kernels), then the checkout."""
    return (_PACKAGE / "kernels", _PACKAGE.parent / "kernels")


def kernel_path(stem: str) -> Path:
    """The path of kernels/<stem>.cu, installed or in the source checkout."""
    for folder in kernel_dirs():
        path = folder / f"{stem}.cu"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"CUDA source {stem}.cu not found in {', '.join(str(d) for d in kernel_dirs())}; "
        "reinstall caffe_fx (the wheel ships it as caffe_fx/kernels/)")


def kernel_source(stem: str) -> str:
    return kernel_path(stem).read_text()


def _cupy() -> Any:
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError as e:
        raise MissingDependencyError(
            "caffe_fx's CUDA kernels (ROIPooling, PSROIPooling on CUDA tensors) need CuPy: "
            "pip install 'caffe_fx[cuda]' (cupy-cuda12x), or move the tensors to the CPU"
        ) from e
    return cupy


@functools.lru_cache(maxsize=None)
def _module(stem: str, device: int) -> Any:
    cupy = _cupy()
    with cupy.cuda.Device(device):
        return cupy.RawModule(code=kernel_source(stem), options=("--std=c++11",))


def launch(stem: str, name: str, count: int, args: tuple[Any, ...], device: torch.device,
           threads: int = 512) -> None:
    """Runs kernel `name` of kernels/<stem>.cu over `count` threads (Caffe's
    CAFFE_GET_BLOCKS) on torch's current stream.  Tensor arguments are passed as device
    pointers; ints and floats as the kernel's int / float / double (np scalars)."""
    if count <= 0:
        return
    cupy = _cupy()
    index = device.index if device.index is not None else torch.cuda.current_device()
    kernel = _module(stem, index).get_function(name)
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream)
    cargs = tuple(cupy.asarray(a) if isinstance(a, torch.Tensor) else a for a in args)
    blocks = (count + threads - 1) // threads
    with cupy.cuda.Device(index), stream:  # the current stream: RawKernel launches on it
        kernel((blocks,), (threads,), cargs)
