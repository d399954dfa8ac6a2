"""kernels/roi_pool.cu and kernels/psroi_pool.cu: they compile (nvcc -ptx), the loader of
caffe_fx/ops/_cuda_kernels.py finds them in this checkout and in an installed wheel, and a
CUDA tensor without CuPy gets a MissingDependencyError.  The numbers of the CUDA kernels
are checked on a GPU by tests/layers/test_roi_pooling.py and test_psroi_pooling.py."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from caffe_fx.errors import MissingDependencyError
from caffe_fx.ops import _cuda_kernels
from caffe_fx.ops import psroi_pool as P
from caffe_fx.ops import roi_pool as R

ROOT = Path(__file__).resolve().parents[2]
KERNELS = {
    "roi_pool": ["roi_pool_forward_float32", "roi_pool_backward_float32",
                 "roi_pool_forward_float64", "roi_pool_backward_float64"],
    "psroi_pool": ["psroi_pool_forward_float32", "psroi_pool_backward_float32",
                   "psroi_pool_forward_float64", "psroi_pool_backward_float64"],
}


@pytest.mark.parametrize("stem", sorted(KERNELS))
def test_kernel_compiles_to_ptx(stem: str, tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if nvcc is None:
        pytest.skip("needs nvcc (the CUDA toolkit)")
    out = tmp_path / f"{stem}.ptx"
    proc = subprocess.run([nvcc, "-ptx", "-std=c++11", str(_cuda_kernels.kernel_path(stem)),
                           "-o", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    ptx = out.read_text()
    for name in KERNELS[stem]:  # extern "C": unmangled entry points for RawModule
        assert f".entry {name}(" in ptx, f"{stem}.cu has no kernel {name}"
    if stem == "psroi_pool":
        assert "fma.rn.f32" in ptx  # the bin edges' one rounding


def test_loader_finds_the_checkouts_sources() -> None:
    for stem in KERNELS:
        path = _cuda_kernels.kernel_path(stem)
        assert path.read_text() == (ROOT / "kernels" / f"{stem}.cu").read_text()
    with pytest.raises(FileNotFoundError, match=r"nope.cu not found"):
        _cuda_kernels.kernel_path("nope")


def test_cuda_without_cupy_is_a_missing_dependency(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(MissingDependencyError, match=r"need CuPy: pip install 'caffe_fx\[cuda\]'"):
        _cuda_kernels._cupy()


def _signatures(stem: str) -> dict[str, list[str]]:
    """The parameter types of each kernel of kernels/<stem>.cu's extern "C" macro, by name
    without the dtype suffix: 'int', 'T', 'int*' or 'T*'."""
    text = _cuda_kernels.kernel_source(stem)
    out = {}
    for name, params in re.findall(r'extern "C" __global__ void (\w+)_##SUFFIX\(([^)]*)\)',
                                   text):
        types = []
        for param in params.replace("\\", " ").split(","):
            words = param.replace("const", " ").split()
            types.append(" ".join(words[:-1]).replace(" *", "*"))
        out[name] = types
    return out


def _kind(arg: object, dtype: torch.dtype) -> str:
    if isinstance(arg, torch.Tensor):
        assert arg.is_contiguous()
        return "int*" if arg.dtype == torch.int32 else "T*" if arg.dtype == dtype else "?"
    if isinstance(arg, np.int32):
        return "int"
    return "T" if arg.dtype == {torch.float32: np.float32, torch.float64: np.float64}[dtype] \
        else "?"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_launches_pass_what_the_kernels_take(dtype: torch.dtype, monkeypatch) -> None:
    """Each CUDA implementation's arguments, run with the launch recorded instead of done,
    have the types and order of its kernel's parameters in the .cu (an int32 is an `int`,
    a scalar of the dtype a `T`, a contiguous tensor a pointer), and one thread per
    element."""
    launched = []
    monkeypatch.setattr(_cuda_kernels, "launch",
                        lambda stem, name, count, args, device: launched.append(
                            (stem, name, count, args)))
    x = torch.randn(2, 8, 5, 6, dtype=dtype)
    rois = torch.tensor([[0, 0, 0, 4, 4], [1, 1, 1, 3, 2.0]])
    top, argmax = R._roi_pool_cuda(x, rois, 2, 3, 0.5)
    R._roi_pool_backward_cuda(top, rois, argmax, 2, 8, 5, 6)
    ps = P._psroi_pool_cuda(x, rois, 2, 2, 0.5)
    P._psroi_pool_backward_cuda(ps, rois, 2, 8, 5, 6, 2, 2, 0.5)
    suffix = str(dtype).split(".")[1]
    for stem, name, count, args in launched:
        assert name.endswith(f"_{suffix}")
        want = _signatures(stem)[name[: -len(suffix) - 1]]
        assert [_kind(a, dtype) for a in args] == want, name
        assert int(args[0]) == count
    assert len(launched) == 4


FIND = """
import caffe_fx, json
from caffe_fx.ops import _cuda_kernels
print(json.dumps([caffe_fx.__file__] + [str(_cuda_kernels.kernel_path(s)) for s in
                 ("roi_pool", "psroi_pool")]))
"""


@pytest.mark.slow
def test_wheel_ships_the_kernels(tmp_path: Path) -> None:
    """`pip wheel` of a copy of this checkout holds caffe_fx/kernels/*.cu, and caffe_fx
    installed from it into a fresh virtual environment (no checkout around it; torch and
    the rest from this interpreter's site-packages) finds them there."""
    import json

    src = tmp_path / "src"  # a copy, so that the build writes nothing into this checkout
    shutil.copytree(ROOT / "caffe_fx", src / "caffe_fx",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", src / "kernels")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md",
                 "caffe_fx_as_caffe.pth"):
        shutil.copy(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--quiet", str(src), "-w",
                           str(tmp_path / "dist")], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("caffe_fx-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for stem in KERNELS:
            assert f"caffe_fx/kernels/{stem}.cu" in names
            assert z.read(f"caffe_fx/kernels/{stem}.cu") == \
                (ROOT / "kernels" / f"{stem}.cu").read_bytes()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--no-deps", "--no-index", "--ignore-installed", "--quiet",
                           str(wheel)],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(python), "-c", FIND], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    package, *sources = (Path(p) for p in json.loads(run.stdout))
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, env=env, check=True
                               ).stdout.strip()).resolve()
    assert site.is_relative_to(venv.resolve())
    assert package.resolve().is_relative_to(site)
    for stem, path in zip(("roi_pool", "psroi_pool"), sources):
        assert path.resolve() == site / "caffe_fx" / "kernels" / f"{stem}.cu"
