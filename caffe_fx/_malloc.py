"""glibc malloc tuned for inference's allocation pattern, once per process.

A forward frees and allocates the same large activation buffers every call.  glibc
serves blocks above M_MMAP_THRESHOLD (128 KiB at first, then adjusting up to the largest
block freed so far) with mmap and returns them to the system on free, and trims the
heap's top above M_TRIM_THRESHOLD: the next forward page-faults its activations in
again.  Caffe allocates its blobs once.  Serving every block from the heap (M_MMAP_MAX
0) and trimming it only above 1 GiB keeps freed activations and gradients mapped for the
next call (measured on 2 cores, separate processes: MobileNet v2 b8 79-93 -> 69-75 ms,
ResNet-50 b8 390-454 -> 343 ms, VGG16 b8 1400 -> 1240 ms with the 32 MiB threshold alone;
CaffeNet b32's training step: fc6's weight-grad GEMM 54 -> 22 ms once its 151 MB output
comes from the heap).  Memory freed stays with the process (up to the trim threshold).

Set by pipeline.lower() - every compile(), pycaffe Net and Solver - unless the
environment already sets MALLOC_MMAP_THRESHOLD_, MALLOC_MMAP_MAX_ or
MALLOC_TRIM_THRESHOLD_ (glibc reads those at start) or CAFFE_FX_MALLOPT=0.  Process-wide; a no-op where libc is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1 << 30

_done = False


def _mallopt():  # noqa: ANN202  (ctypes function or None)
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):
            return None  # musl and others: other allocators, other knobs
        return libc.mallopt
    except OSError:
        return None


def tune() -> bool:
    """Raises the thresholds once; True when this call set them."""
    global _done
    if _done:
        return False
    _done = True
    if os.environ.get("CAFFE_FX_MALLOPT", "1") == "0" or any(k in os.environ for k in (
            "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_")):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_MMAP_MAX, 0)  # blocks above the threshold too: a 151 MB fc6 weight grad
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return True
