"""Build hooks that put caffe_fx_as_caffe.pth into site-packages; metadata is in pyproject.toml.

The .pth runs caffe_fx/_caffe_env.py at interpreter start when CAFFE_FX_AS_CAFFE is set
(as coverage's and pytest-cov's .pth files do).  A wheel (`pip install .`) gets it through
build_py; an editable wheel (`pip install -e .`, PEP 660) is built without copying
build_lib, so the file is added to that wheel, with its RECORD line, after it is built.
"""
from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = Path(__file__).resolve().parent / "caffe_fx_as_caffe.pth"
# The custom ops' CUDA sources (kernels/*.cu), shipped as caffe_fx/kernels/ and found there
# by caffe_fx/ops/_cuda_kernels.py (in a source checkout, it reads kernels/ itself).
KERNELS = sorted((Path(__file__).resolve().parent / "kernels").glob("*.cu"))


class BuildPyWithPth(build_py):
    """Copies the .pth into the root of build_lib, which becomes site-packages, and the
    CUDA sources into caffe_fx/kernels/."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib, PTH.name)), preserve_mode=False)
        self.mkpath(str(Path(self.build_lib, "caffe_fx", "kernels")))
        for src in KERNELS:
            self.copy_file(str(src), str(self._kernel_out(src)), preserve_mode=False)

    def _kernel_out(self, src: Path) -> Path:
        return Path(self.build_lib, "caffe_fx", "kernels", src.name)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, PTH.name)),
                *(str(self._kernel_out(src)) for src in KERNELS)]


def add_to_wheel(wheel: Path, name: str, data: bytes) -> None:
    """Rewrites `wheel` with `name` added at its root and listed in its RECORD (temp
    file + rename)."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    tmp = wheel.with_name(wheel.name + ".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        records = [i for i in src.infolist() if i.filename.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            raise RuntimeError(f"{wheel}: expected one .dist-info/RECORD, found {len(records)}")
        for item in src.infolist():
            payload = src.read(item)
            if item is records[0]:
                payload += f"{name},sha256={digest},{len(data)}\n".encode()
            elif item.filename == name:
                continue
            dst.writestr(item, payload)
        dst.writestr(name, data)
    os.replace(tmp, wheel)


class EditableWheelWithPth(editable_wheel):
    """Adds the .pth to the editable wheel(s) that this run wrote into dist_dir."""

    def run(self) -> None:
        before = {p: p.stat().st_mtime_ns for p in Path(self.dist_dir).glob("*.whl")}
        super().run()
        built = [p for p in Path(self.dist_dir).glob("*.editable-*.whl")
                 if before.get(p) != p.stat().st_mtime_ns]
        if not built:
            raise RuntimeError(f"no editable wheel was written to {self.dist_dir}")
        for wheel in built:
            add_to_wheel(wheel, PTH.name, PTH.read_bytes())


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
