"""caffe_fx/_malloc.py: glibc's thresholds are raised once per process by the pipeline,
unless the environment says otherwise."""
import pytest

import caffe_fx
from caffe_fx import _malloc

NET = 'input: "x" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2\n' \
      'layer { name: "r" type: "ReLU" bottom: "x" top: "y" }\n'


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(_malloc, "_done", False)
    monkeypatch.setattr(_malloc, "_mallopt", lambda: lambda k, v: seen.append((k, v)) or 1)
    for k in ("CAFFE_FX_MALLOPT", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
              "MALLOC_MMAP_MAX_"):
        monkeypatch.delenv(k, raising=False)
    return seen


def test_compile_raises_the_thresholds_once(calls):
    caffe_fx.compile(NET)
    caffe_fx.compile(NET)
    # M_MMAP_THRESHOLD, M_MMAP_MAX, M_TRIM_THRESHOLD
    assert calls == [(-3, 32 << 20), (-4, 0), (-1, 1 << 30)]


@pytest.mark.parametrize("env", [("CAFFE_FX_MALLOPT", "0"), ("MALLOC_MMAP_THRESHOLD_", "4096"),
                                 ("MALLOC_TRIM_THRESHOLD_", "0"), ("MALLOC_MMAP_MAX_", "8")])
def test_the_environment_wins(calls, monkeypatch, env):
    monkeypatch.setenv(*env)
    caffe_fx.compile(NET)
    assert calls == []


def test_glibc_is_found_here():
    # On glibc Linux (the CI's image) the real mallopt is reachable.
    import platform
    import sys
    libc = platform.libc_ver()[0]
    if not sys.platform.startswith("linux") or libc != "glibc":
        pytest.skip(f"mallopt is glibc's and caffe_fx tunes malloc only there; this is "
                    f"{sys.platform} with {libc or 'another libc'}")
    assert _malloc._mallopt() is not None
