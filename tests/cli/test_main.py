"""The `caffe-fx` entry point: --help without torch, one line and exit 1 on every error.

`--help` runs in a fresh interpreter per subcommand (iterating COMMANDS, so new
subcommands are covered as they land), which must not import torch or numpy.  The
error paths run in-process through main() and assert the exact one-line message.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from caffe_fx.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]

HELP = """
import json, sys
from caffe_fx.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "heavy": sorted(m for m in sys.modules
                  if m.split(".")[0] in ("torch", "numpy", "networkx", "h5py"))}))
"""


@pytest.mark.parametrize("command", [None, *COMMANDS], ids=["caffe-fx", *COMMANDS])
def test_help_does_not_import_torch(command):
    argv = ["--help"] if command is None else [command, "--help"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", HELP, *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    usage, _, result = proc.stdout.rpartition("\n{")
    assert json.loads("{" + result) == {"code": 0, "heavy": []}
    assert usage.startswith(f"usage: caffe-fx {command or ''}".rstrip())


def test_draw_rankdirs_are_drawings():
    from caffe_fx import drawing
    from caffe_fx.cli import draw

    assert draw.RANKDIRS == drawing.RANKDIRS  # spelled twice so that --help stays light


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_info_on_a_folder(capsys, tmp_path):
    assert one_line_error(capsys, ["info", str(tmp_path)]) == (
        f"caffe-fx info: error: {tmp_path}: is a folder; a prototxt file was expected")


DATA_NET = """
name: "d"
layer { name: "mnist" type: "Data" top: "data" top: "label"
        data_param { source: "/nonexistent_lmdb" batch_size: 64 backend: LMDB }
        transform_param { crop_size: 24 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 } }
"""


def test_data_layer_hint_speaks_cli_flags(capsys, tmp_path):
    net = tmp_path / "d.prototxt"
    net.write_text(DATA_NET)
    line = one_line_error(capsys, ["info", str(net)])
    assert line.startswith(f"caffe-fx info: error: {net}: layer 'mnist' (Data) reads its "
                           "data from files: data_param.source = '/nonexistent_lmdb' does "
                           "not exist")
    # every top at once, with the batch_size and crop_size of the prototxt
    assert "give the tops' shapes with --input-shape data=64,C,24,24 --input-shape " \
           "label=64 instead" in line
    # the flag it names works
    assert main(["info", str(net), "--input-shape", "data=64,1,24,24",
                 "--input-shape", "label=64"]) == 0


PYTHON_NET = """
name: "p"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "mine" type: "Python" bottom: "data" top: "out"
        python_param { module: "mylayers" layer: "Double" } }
"""


def test_python_layer_refusal_says_how_to_trust_it(capsys, tmp_path):
    net = tmp_path / "p.prototxt"
    net.write_text(PYTHON_NET)
    assert one_line_error(capsys, ["info", str(net)]) == (
        f"caffe-fx info: error: {net}: Python layers 'mine' (python_param.module = "
        "'mylayers') run user code, which caffe-fx runs only when told: pass "
        "--trust-python-layers (it imports python_param.module from sys.path, i.e. "
        "PYTHONPATH, as caffe built WITH_PYTHON_LAYER does) [in build]")
    assert "Unknown layer type" not in capsys.readouterr().err


MYLAYERS = """import caffe


class Double(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(2, *bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data
"""


def test_trusted_python_layers_run_their_reshape_in_info_and_time(
        capsys, tmp_path, monkeypatch):
    net = tmp_path / "p.prototxt"
    net.write_text(PYTHON_NET)
    (tmp_path / "mylayers.py").write_text(MYLAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mylayers", raising=False)
    assert main(["info", str(net), "--trust-python-layers"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"mine \(Python\)\s+data -> out\s+\(2, 1, 3\)", table), table
    assert main(["time", "-model", str(net), "-iterations", "2",
                 "--trust-python-layers"]) == 0
    assert "mine\tforward: " in capsys.readouterr().out


ACCURACY_NET = """
name: "a"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 1000 } shape { dim: 2 } } }
layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "label" top: "acc"
        accuracy_param { top_k: 5 } }
"""


def test_onnx_check_without_onnxruntime_is_one_line(capsys, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import caffe_fx

    net = tmp_path / "a.prototxt"
    net.write_text(ACCURACY_NET)
    weights = tmp_path / "a.caffemodel"
    caffe_fx.save_caffemodel(weights, caffe_fx.compile(net), net)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    out = tmp_path / "a.onnx"
    line = one_line_error(capsys, ["export", str(net), str(weights), "-o", str(out)])
    assert line.startswith("caffe-fx export: error: ONNX check with onnx's reference "
                           "evaluator failed: ")
    assert line.endswith(" (onnxruntime is not installed; with pip install onnxruntime it "
                         "runs the check instead); nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.caffemodel", "a.prototxt"]


SILENCED_NET = """
name: "s"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "conv2" type: "Convolution" bottom: "data" top: "conv2"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "sil" type: "Silence" bottom: "conv" bottom: "conv2" }
"""


def test_export_outputs_picks_the_blobs(capsys, tmp_path):
    import torch

    import caffe_fx

    net = tmp_path / "s.prototxt"
    net.write_text(SILENCED_NET)
    weights = tmp_path / "s.caffemodel"
    caffe_fx.save_caffemodel(weights, caffe_fx.compile(net), net)
    out = tmp_path / "s.pt2"
    assert main(["export", str(net), str(weights), "-o", str(out), "--outputs", "conv2"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (torch.export); outputs conv2 ")
    with open(out, "rb") as f:
        program = torch.export.load(f)
    got = program.module()(data=torch.zeros(1, 3, 4, 4))
    assert list(got) == ["conv2"]
    line = one_line_error(capsys, ["export", str(net), str(weights), "-o",
                                   str(tmp_path / "t.pt2"), "--outputs", "nope"])
    assert line.startswith("caffe-fx export: error: ") and "'nope'" in line
    assert not (tmp_path / "t.pt2").exists()


def test_writing_into_a_missing_folder_is_one_line(capsys, tmp_path):
    """Issue #12: a missing output folder is one line and exit 1; no folder is made."""
    weights = ROOT / "tests" / "golden" / "convert" / "small.caffemodel"
    target = tmp_path / "missing" / "w.pt"
    assert main(["convert", str(weights), "-o", str(target)]) == 1
    err = capsys.readouterr().err
    assert err == (f"caffe-fx convert: error: {target}: cannot write it: the folder "
                   f"{target.parent} does not exist; make it first or write somewhere else\n")
    assert not target.parent.exists()


def test_a_mistyped_command_is_named_not_taken_for_a_weights_file(capsys, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["trian", "--solver", "s.prototxt"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "caffe-fx: error: 'trian' is not a command (did you mean 'train'?); commands: "
        f"{', '.join(COMMANDS)}; a weights file converts with caffe-fx MODEL.caffemodel")
    # A file of that name is still a model to convert (the shorthand).
    (tmp_path / "trian").write_bytes(b"")
    assert main(["trian"]) == 1
    assert "caffe-fx convert: error: trian: " in capsys.readouterr().err
