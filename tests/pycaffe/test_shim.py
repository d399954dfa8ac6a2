"""`import caffe` gives caffe_fx.pycaffe after install(), under the runner, and with
CAFFE_FX_AS_CAFFE=1 through the caffe_fx_as_caffe.pth installed in this environment.

Whatever installs the aliases runs in a fresh interpreter (subprocess), so this test
process's sys.modules never holds a `caffe`; refusals, which change nothing, run here.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import types
from pathlib import Path

import pytest

from caffe_fx import _caffe_env
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
from caffe.coord_map import crop
try:
    import caffe._caffe
    absent = "imported"
except ImportError as e:
    absent = [type(e).__name__, isinstance(e, CaffeAliasError), e.name, str(e)]
print(json.dumps({
    "caffe": caffe.__name__, "io": io.__name__, "caffe.io": caffe.io is io,
    "caffe_pb2": caffe_pb2.__name__, "same_pb2": caffe.proto.caffe_pb2 is caffe_pb2,
    "net_spec": caffe.net_spec.__name__, "L": L is caffe.net_spec.L,
    "pooling_max": P.Pooling.MAX, "Net": Net.__module__, "TEST": caffe.TEST,
    "transformer": caffe.io.Transformer.__module__, "draw": caffe.draw.__name__,
    "classifier": Classifier.__module__, "crop": crop.__module__, "absent": absent}))
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
        "crop": "caffe_fx.pycaffe.coord_map",
        "absent": ["CaffeAliasError", True, "caffe._caffe",
                   ("No module named 'caffe._caffe': `caffe` is caffe_fx.pycaffe here "
                    "(caffe_fx.pycaffe.install()), which provides: caffe, caffe.classifier, "
                    "caffe.coord_map, caffe.detector, caffe.draw, caffe.io, caffe.net_spec, "
                    "caffe.proto, caffe.proto.caffe_pb2, caffe.pycaffe")]}


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



# --- CAFFE_FX_AS_CAFFE and the installed caffe_fx_as_caffe.pth ---------------------------

PTH = ROOT / "caffe_fx_as_caffe.pth"


def installed_pth() -> Path:
    for folder in site.getsitepackages():
        if (path := Path(folder, PTH.name)).is_file():
            return path
    pytest.fail(f"{PTH.name} is not in this environment's site-packages "
                f"{site.getsitepackages()}; reinstall: pip install -e {ROOT} --no-deps "
                "--no-build-isolation")


def as_caffe(code: str, value: str | None, cwd: Path,
             first_on_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A plain `python -c CODE`: only the installed .pth (and PYTHONPATH, which puts this
    checkout's caffe_fx first) can make `import caffe` mean anything."""
    env = {k: v for k, v in os.environ.items() if k not in (_caffe_env.ENV, "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (first_on_path, ROOT) if p)
    if value is not None:
        env[_caffe_env.ENV] = value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd, check=False)


def test_installed_pth_is_this_checkouts():
    assert installed_pth().read_text() == PTH.read_text(), (
        f"{installed_pth()} is stale; reinstall: pip install -e {ROOT} --no-deps "
        "--no-build-isolation")


HEAVY = "[m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'caffe_fx', 'caffe')]"

AS_CAFFE = f"""
import importlib.util, json, sys
start = {HEAVY}
probed = importlib.util.find_spec("caffe").origin  # finding `caffe` imports nothing
probed_heavy = {HEAVY}
import caffe, caffe.io
from caffe.proto import caffe_pb2
import caffe_fx.pycaffe
print(json.dumps({{
    "start": start, "probed": probed, "probed_heavy": probed_heavy,
    "caffe": caffe is caffe_fx.pycaffe, "spec": caffe.__spec__.name, "io": caffe.io.__name__,
    "caffe_pb2": caffe_pb2.__name__, "torch": "torch" in sys.modules}}))
"""


def test_env_var_makes_plain_import_caffe_give_the_facade(tmp_path):
    installed_pth()
    real = tmp_path / "real"  # a real caffe on sys.path loses to the variable
    (real / "caffe").mkdir(parents=True)
    (real / "caffe" / "__init__.py").write_text("REAL = True\n")
    proc = as_caffe(AS_CAFFE, "1", tmp_path, first_on_path=real)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout) == {
        "start": ["caffe_fx._caffe_env"], "probed": "caffe_fx.pycaffe (CAFFE_FX_AS_CAFFE)",
        "probed_heavy": ["caffe_fx._caffe_env"], "caffe": True, "spec": "caffe_fx.pycaffe",
        "io": "caffe_fx.pycaffe.io", "caffe_pb2": "caffe_fx.proto.caffe_pb2", "torch": True}
    proc = as_caffe("import caffe; print(caffe.REAL)", None, tmp_path, first_on_path=real)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "True\n", "")


STARTUP = f"""
import sys
exec(open(sys.argv[1]).read())  # a --system-site-packages venv runs each .pth twice
finders = [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "_FacadeFinder"]
print(len(finders), {HEAVY})
"""


def test_startup_imports_neither_caffe_fx_nor_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", STARTUP, str(installed_pth())],
                          capture_output=True, text=True, check=False, cwd=tmp_path,
                          env=dict(os.environ, **{_caffe_env.ENV: "on"}))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "1 ['caffe_fx._caffe_env']\n", "")


NO_CAFFE = """
import sys
try:
    import caffe
    print("imported", caffe.__name__)
except ImportError as e:
    print(type(e).__name__, e.name, [k for k in sys.modules if k.startswith("caffe")])
"""


@pytest.mark.parametrize("value", [None, "", "0", " Off"], ids=["unset", "empty", "0", "off"])
def test_env_var_off_leaves_import_caffe_alone(value, tmp_path):
    proc = as_caffe(NO_CAFFE, value, tmp_path)
    loaded = "['caffe_fx._caffe_env']" if value else "[]"  # "0" loads the hook, which says no
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0, f"ModuleNotFoundError caffe {loaded}\n", "")


def test_unknown_env_value_warns_once_and_leaves_import_caffe_alone(tmp_path):
    proc = as_caffe(NO_CAFFE, "maybe", tmp_path)
    assert (proc.returncode, proc.stdout) == (
        0, "ModuleNotFoundError caffe ['caffe_fx._caffe_env']\n")
    assert proc.stderr == (
        "caffe_fx: CAFFE_FX_AS_CAFFE='maybe' is not understood (on: 1, true, yes, on; off: "
        "unset, empty, 0, false, no, off); `import caffe` is left alone\n")


def test_a_broken_caffe_fx_never_stops_the_interpreter(tmp_path):
    broken = tmp_path / "broken"  # caffe_fx half-uninstalled, found before this checkout
    (broken / "caffe_fx").mkdir(parents=True)
    (broken / "caffe_fx" / "__init__.py").write_text("raise RuntimeError('half gone')\n")
    proc = as_caffe("print('alive')", "1", tmp_path, first_on_path=broken)
    assert (proc.returncode, proc.stdout) == (0, "alive\n")
    assert proc.stderr == (
        "caffe_fx: CAFFE_FX_AS_CAFFE is set but caffe_fx_as_caffe.pth failed "
        "(FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{broken / 'caffe_fx' / '_caffe_env.py'}'); `import caffe` is left alone\n")
    # The hook itself survives, the package does not: `import caffe` says why.
    shutil.copy(Path(_caffe_env.__file__), broken / "caffe_fx" / "_caffe_env.py")
    proc = as_caffe("print('alive')\nimport caffe", "1", tmp_path, first_on_path=broken)
    assert (proc.returncode, proc.stdout) == (1, "alive\n")
    assert proc.stderr.splitlines()[-1] == (
        "ImportError: CAFFE_FX_AS_CAFFE='1' makes `import caffe` give caffe_fx.pycaffe, which "
        "failed to import: RuntimeError: half gone")


PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"
HOOKED = """
import importlib.util, sys
print(importlib.util.find_spec("caffe").origin)  # the installed .pth ran ...
print(sys.modules["caffe_fx._caffe_env"].__file__)  # ... and found the installed caffe_fx
"""


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["pip-install", "pip-install-e"])
def test_pip_install_puts_the_pth_into_site_packages(editable, tmp_path):
    src = tmp_path / "src"  # a copy, so that the build writes nothing into this checkout
    shutil.copytree(ROOT / "caffe_fx", src / "caffe_fx",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", PTH.name):
        shutil.copy(ROOT / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python_ = str(venv / "bin" / "python")
    # pip and setuptools come from this environment (the test extra's setuptools, which
    # builds wheels without `wheel`), not from whatever the base interpreter holds, which
    # is what --system-site-packages would give a venv made from inside a venv.
    nested = subprocess.run([python_, "-c", PURELIB], capture_output=True, text=True,
                            check=True).stdout.strip()
    Path(nested, "_outer_environment.pth").write_text(
        "".join(f"{p}\n" for p in site.getsitepackages()))
    proc = subprocess.run([python_, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--quiet", *(["-e"] if editable else []), str(src)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    where = Path(subprocess.run([python_, "-c", PURELIB], capture_output=True, text=True,
                                check=True).stdout.strip())
    assert (where / PTH.name).read_text() == PTH.read_text()
    record = next(where.glob("caffe_fx-*.dist-info")) / "RECORD"
    assert [line.split(",")[0] for line in record.read_text().splitlines()
            if PTH.name in line] == [PTH.name]  # so that pip uninstall removes it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python_, "-c", HOOKED], capture_output=True, text=True, check=False,
                          cwd=tmp_path, env=dict(env, **{_caffe_env.ENV: "1"}))
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    home = src if editable else where
    assert proc.stdout == f"caffe_fx.pycaffe (CAFFE_FX_AS_CAFFE)\n{home}/caffe_fx/_caffe_env.py\n"


@pytest.mark.parametrize(("value", "wanted"), [
    (None, False), ("", False), ("0", False), ("false", False), ("No", False),
    ("off", False), ("1", True), ("true", True), (" YES ", True), ("on", True),
    ("2", None), ("enabled", None),
])
def test_env_values(value, wanted):
    assert _caffe_env.requested(value) is wanted
