"""The public API is small and frozen: changing it must change this snapshot."""
import inspect
import subprocess
import sys
from pathlib import Path

import caffe_fx

ROOT = Path(__file__).resolve().parents[2]


def test_all_is_the_documented_surface():
    assert sorted(caffe_fx.__all__) == [
        "Solver", "__version__", "compile", "errors", "register_layer", "save_caffemodel",
        "supported_layers"]


def test_compile_signature():
    assert str(inspect.signature(caffe_fx.compile)) == (
        "(prototxt: 'NetSource', weights: 'WeightsSource' = None, *, "
        "phase: \"Literal['train', 'test'] | int\" = 'test', level: 'int' = 0, "
        "stages: 'Sequence[str]' = (), outputs: 'Sequence[str] | None' = None, "
        "input_shapes: 'Mapping[str, Sequence[int]] | None' = None, "
        "caffe_proto: 'str | os.PathLike | None' = None, "
        "trust_python_layers: 'bool' = False, "
        "layers: 'Mapping[str, Callable[[dict], Any]] | None' = None, "
        "strict: 'bool' = False, fuse: 'bool' = True) -> 'fx.GraphModule'")


def test_save_caffemodel_signature():
    assert str(inspect.signature(caffe_fx.save_caffemodel)) == (
        "(path: 'str | os.PathLike', weights_or_module: 'WeightsOrModule', "
        "prototxt: 'NetSource | None' = None, *, "
        "format: \"Literal['binary', 'hdf5']\" = 'binary', force: 'bool' = False) -> 'Path'")


def test_error_classes_derive_from_builtins():
    e = caffe_fx.errors
    assert issubclass(e.UnsupportedLayerError, NotImplementedError)
    assert issubclass(e.ProtoParseError, ValueError)
    assert issubclass(e.WeightsError, ValueError)
    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, e.CaffeFxWarning if issubclass(cls, Warning) else e.CaffeFxError)
    assert issubclass(e.WriteError, OSError) and issubclass(e.CaffeFxWarning, UserWarning)


def test_readme_generated_sections_are_current():
    rc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_readme.py"), "--check"])
    assert rc.returncode == 0, "README.md is stale: run python tools/gen_readme.py"
