"""The package's floors: every import of a caffe_fx module, at module level or inside a
function, goes to the same floor or one below, so that the frontend never needs the
lowering, the compiler never needs the pycaffe facade, and each concept lives once at
the lowest floor that uses it.

The two imports that go up are the Python layers' runtime: a user's layer module does
`import caffe`, and when no caffe is importable it gets caffe_fx.pycaffe (pycaffe's own
Layer and Blob).  They run only when a Python layer is set up, never at import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import caffe_fx

PACKAGE = Path(caffe_fx.__file__).resolve().parent

# Bottom to top.  A unit is a top-level module or subpackage of caffe_fx.
FLOORS: list[set[str]] = [
    {"errors", "proto", "_atomic", "_memory", "_limits", "_malloc", "_threads", "_caffe_env"},
    {"frontend"},                               # reading NetParameter, caffemodels, HDF5
    {"passes", "ops", "data"},                  # graph passes, kernels, data layers' feed
    {"lowering"},                               # layers -> fx nodes
    {"pipeline", "binding", "distributed"},
    {"weights_io", "optim", "layers", "summary", "drawing"},
    {"compiler", "solver"},
    {"__init__"},                               # the public API
    {"pycaffe"},                                # the facade over all of it
    {"cli", "__main__"},
]

# (importing module, imported module): the Python layers' `import caffe` runtime.
UPWARD = {
    ("caffe_fx.lowering.layers.python", "caffe_fx.pycaffe"),  # shim
    ("caffe_fx.layers", "caffe_fx.pycaffe"),  # python_layer
}


def _floor(unit: str) -> int:
    for i, units in enumerate(FLOORS):
        if unit in units:
            return i
    raise AssertionError(f"caffe_fx.{unit} is on no floor of tests/api/test_layering.py")


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, root: Path = PACKAGE.parent) -> tuple[str, list[tuple[int, str]]]:
    """The module's dotted name (from its path under `root`) and every caffe_fx module
    it imports (line, name)."""
    rel = path.relative_to(root).with_suffix("")
    module = ".".join(rel.parts)
    package = module.rsplit(".", 1)[0]
    if rel.name == "__init__":
        module = package
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            if node.module:
                found.append((node.lineno, ".".join(base + [node.module])))
            else:  # from .. import a, b: each name may be a module
                found += [(node.lineno, ".".join(base + [a.name])) for a in node.names]
    return module, [(line, t) for line, t in found if t == "caffe_fx" or
                    t.startswith("caffe_fx.")]


def test_every_import_goes_down_or_level():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, imports = _imports(path)
        here = _floor(_unit(module))
        for line, target in imports:
            if _floor(_unit(target)) > here and (module, target) not in UPWARD:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} "
                              f"imports {target}")
    assert not upward, "imports that go up a floor:\n" + "\n".join(upward)


def test_the_allowed_upward_imports_still_exist():
    # An entry the code no longer needs would let a new import of the same pair through.
    seen = set()
    for path in PACKAGE.rglob("*.py"):
        module, imports = _imports(path)
        seen |= {(module, target) for _, target in imports}
    assert UPWARD <= seen, sorted(UPWARD - seen)


def test_the_check_sees_an_upward_import(tmp_path):
    # The scan itself: a function-level import of the facade from the frontend is found.
    probe = tmp_path / "caffe_fx" / "frontend" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("def f():\n    from ..pycaffe import net\n    return net\n")
    module, imports = _imports(probe, tmp_path)
    assert module == "caffe_fx.frontend.probe"
    assert imports == [(2, "caffe_fx.pycaffe")]
    assert _floor(_unit(imports[0][1])) > _floor(_unit(module))
