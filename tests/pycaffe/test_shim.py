"""`import caffe` gives caffe_fx.pycaffe after install(), and the runner runs scripts.

Whatever installs the aliases runs in a fresh interpreter (subprocess), so this test
process's sys.modules never holds a `caffe`; refusals, which change nothing, run here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from caffe_fx.errors import CaffeAliasError
from caffe_fx.pycaffe import run, shim

ROOT = Path(__file__).resolve().parents[2]


def python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, check=False)


IMPORTS = """
import json, sys
import caffe_fx.pycaffe
from caffe_fx.errors import CaffeAliasError
assert caffe_fx.pycaffe.install() is caffe_fx.pycaffe
assert caffe_fx.pycaffe.install() is caffe_fx.pycaffe  # idempotent
import caffe
from caffe import io
import caffe.io
from caffe.proto import caffe_pb2
import caffe.proto.caffe_pb2
from caffe import layers as L, params as P
import caffe.net_spec
from caffe.pycaffe import Net
import caffe.draw
from caffe.classifier import Classifier
try:
    import caffe.coord_map
    absent = "imported"
except ImportError as e:
    absent = [type(e).__name__, isinstance(e, CaffeAliasError), e.name, str(e)]
print(json.dumps({
    "caffe": caffe.__name__, "io": io.__name__, "caffe.io": caffe.io is io,
    "caffe_pb2": caffe_pb2.__name__, "same_pb2": caffe.proto.caffe_pb2 is caffe_pb2,
    "net_spec": caffe.net_spec.__name__, "L": L is caffe.net_spec.L,
    "pooling_max": P.Pooling.MAX, "Net": Net.__module__, "TEST": caffe.TEST,
    "transformer": caffe.io.Transformer.__module__, "draw": caffe.draw.__name__,
    "classifier": Classifier.__module__, "absent": absent}))
"""


def test_install_makes_caffe_imports_resolve(tmp_path):
    proc = python(["-c", IMPORTS], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == {
        "caffe": "caffe_fx.pycaffe", "io": "caffe_fx.pycaffe.io", "caffe.io": True,
        "caffe_pb2": "caffe_fx.proto.caffe_pb2", "same_pb2": True,
        "net_spec": "caffe_fx.pycaffe.net_spec", "L": True, "pooling_max": 0, "Net": "caffe_fx.pycaffe.net", "TEST": 1,
        "transformer": "caffe_fx.pycaffe.io",
        "draw": "caffe_fx.pycaffe.draw", "classifier": "caffe_fx.pycaffe.classifier",
        "absent": ["CaffeAliasError", True, "caffe.coord_map",
                   ("No module named 'caffe.coord_map': `caffe` is caffe_fx.pycaffe here "
                    "(caffe_fx.pycaffe.install()), which provides: caffe, caffe.classifier, "
                    "caffe.detector, caffe.draw, caffe.io, caffe.net_spec, caffe.proto, "
                    "caffe.proto.caffe_pb2, caffe.pycaffe")]}


def test_install_refuses_an_imported_real_caffe(monkeypatch):
    real = types.ModuleType("caffe")
    real.__file__ = "/usr/lib/python3/dist-packages/caffe/__init__.py"
    monkeypatch.setitem(sys.modules, "caffe", real)
    with pytest.raises(CaffeAliasError, match=r"cannot alias `caffe` to caffe_fx.pycaffe: a "
                       r"different module `caffe` is already imported \(from /usr/lib/python3/"
                       r"dist-packages/caffe/__init__.py\)"):
        shim.install()
    assert sys.modules["caffe"] is real and shim._FINDER not in sys.meta_path


def test_install_refuses_imported_caffe_submodules(monkeypatch):
    monkeypatch.setitem(sys.modules, "caffe._caffe", types.ModuleType("caffe._caffe"))
    with pytest.raises(CaffeAliasError, match=r"modules of another caffe are already "
                       r"imported: \['caffe._caffe'\]"):
        shim.install()
    assert "caffe" not in sys.modules and not shim.installed()


SCRIPT = """
import json, os, sys
import caffe
from caffe import layers as L
print(json.dumps({"name": __name__, "argv": sys.argv, "path0": sys.path[0],
                  "caffe": caffe.__name__, "ip": L.InnerProduct(num_output=2).fn.type_name}))
sys.exit(3)
"""


def test_runner_runs_a_script_as_python_would(tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    (folder / "script.py").write_text(SCRIPT)
    proc = python(["-m", "caffe_fx.pycaffe.run", "nb/script.py", "a", "--b"], tmp_path)
    assert proc.returncode == 3, proc.stderr  # the script's own sys.exit
    assert json.loads(proc.stdout) == {
        "name": "__main__", "argv": ["nb/script.py", "a", "--b"], "path0": str(folder),
        "caffe": "caffe_fx.pycaffe", "ip": "InnerProduct"}


def test_runner_runs_a_module(tmp_path):
    (tmp_path / "nbmod.py").write_text(SCRIPT)
    proc = python(["-m", "caffe_fx.pycaffe.run", "-m", "nbmod", "x"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    got = json.loads(proc.stdout)
    assert (got["name"], got["argv"][1:], got["caffe"]) == ("__main__", ["x"], "caffe_fx.pycaffe")
    assert Path(got["argv"][0]) == tmp_path / "nbmod.py"


@pytest.mark.parametrize(("argv", "message"), [
    ([], "usage: python -m caffe_fx.pycaffe.run SCRIPT.py"),
    (["-m"], "error: -m needs a module name"),
    (["missing.py"], "error: 'missing.py': no such file"),
], ids=["no-arguments", "no-module", "missing-script"])
def test_runner_usage_errors(argv, message, capsys):
    assert run.main(argv) == 2
    assert message in capsys.readouterr().err
    assert "caffe" not in sys.modules

