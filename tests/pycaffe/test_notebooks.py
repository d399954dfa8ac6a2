"""Classic pycaffe notebook code runs unchanged on caffe_fx and computes what real pycaffe did.

Each script of tests/pycaffe/notebooks/ does `import caffe`; here it runs in a fresh
interpreter under `python -m caffe_fx.pycaffe.run` (caffe_fx/pycaffe/run.py).  Goldens:
tools/make_notebook_goldens.py ran the same scripts under BVLC pycaffe 1.0.  Nets come from
../shared/models; CaffeNet's weights from real Caffe (caffe-oracle --randomize 7).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffe_fx.proto import caffe_pb2
from tests.nets.oracle import ORACLE, oracle_unavailable
from tests.pycaffe.notebooks.cases import (
    CAFFENET_WEIGHTS,
    NOTEBOOKS,
    SCRATCH,
    SHARED_FILES,
    Notebook,
    make_caffenet_weights,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "notebooks"
RTOL = 1e-5


def _marks(nb: Notebook) -> list[pytest.MarkDecorator]:
    # CaffeNet's weights need the oracle, and the net itself takes a while on CPU.
    return [pytest.mark.oracle, pytest.mark.slow] if nb.needs_caffenet_weights else []


@pytest.fixture(scope="module")
def caffenet_weights(tmp_path_factory: pytest.TempPathFactory, shared_models: Path) -> str:
    why = oracle_unavailable()
    if why:
        pytest.skip(why)
    dest = tmp_path_factory.mktemp("caffenet") / "caffenet.caffemodel"
    make_caffenet_weights(ORACLE, shared_models / SHARED_FILES["caffenet_deploy"], dest)
    return str(dest)


def run_under_caffe_fx(nb: Notebook, out: Path, paths: dict[str, str]) -> dict[str, np.ndarray]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [sys.executable, "-m", "caffe_fx.pycaffe.run", str(nb.script),
         *nb.argv(str(out), paths)],
        capture_output=True, text=True, env=env, cwd=out.parent, check=False)
    assert proc.returncode == 0, f"{nb.script.name} failed under caffe_fx:\n{proc.stderr[-4000:]}"
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def assert_same(name: str, key: str, got: np.ndarray, want: np.ndarray) -> None:
    where = f"{name}.npz[{key!r}]"
    assert got.shape == want.shape, where
    if want.dtype.kind == "f":
        assert got.dtype.kind == "f", where
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
        err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
        assert err <= RTOL * scale, f"{where}: max abs error {err:.3g}, allowed {RTOL * scale:.3g}"
    elif key.endswith("_text"):
        # str(NetParameter): protobuf 3.12 (pycaffe 1.0) and ours spell floats differently
        # (0.00392156886 vs 0.003921569); the nets they describe must be identical.
        def parse(text: np.ndarray) -> caffe_pb2.NetParameter:
            return text_format.Parse(str(text), caffe_pb2.NetParameter())
        assert parse(got) == parse(want), where
    else:
        assert got.dtype.kind == want.dtype.kind and np.array_equal(got, want), \
            f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("nb", [pytest.param(nb, id=nb.name, marks=_marks(nb))
                                for nb in NOTEBOOKS])
def test_notebook_matches_real_pycaffe(nb: Notebook, tmp_path: Path, shared_models: Path,
                                       request: pytest.FixtureRequest) -> None:
    paths = {key: str(shared_models / rel) for key, rel in SHARED_FILES.items()}
    for key in nb.args:
        if key in SHARED_FILES and not Path(paths[key]).exists():
            pytest.skip(f"needs {paths[key]} (absent)")
    if nb.needs_caffenet_weights:
        paths[CAFFENET_WEIGHTS] = request.getfixturevalue("caffenet_weights")
    (tmp_path / "scratch").mkdir()
    paths[SCRATCH] = str(tmp_path / "scratch")
    got = run_under_caffe_fx(nb, tmp_path / f"{nb.name}.npz", paths)
    with np.load(GOLDEN / f"{nb.name}.npz") as z:
        want = {k: z[k] for k in z.files}
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert_same(nb.name, key, got[key], value)
