"""`caffe-fx export`: .pt2, .onnx and .ts files that reproduce the compiled net.

LeNet with its trained weights (../shared/models).  Each written file is loaded back
here independently and compared with caffe_fx.compile's GraphModule on another input.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.cli import export as export_cmd
from caffe_fx.cli import main
from caffe_fx.errors import ExportError
from tests.nets.oracle import MODELS

LENET = MODELS / "ethereon+caffe-tensorflow/examples/mnist"
SHAPE = ["--input-shape", "data=2,1,28,28"]


@pytest.fixture(scope="module")
def lenet() -> tuple[list[str], torch.fx.GraphModule, torch.Tensor]:
    proto, weights = LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"
    if not weights.exists():
        pytest.skip(f"needs ../shared/models ({weights} is absent)")
    gm = caffe_fx.compile(proto, weights, input_shapes={"data": (2, 1, 28, 28)})
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    return ["export", str(proto), str(weights)], gm, x


def check_written(capsys: pytest.CaptureFixture[str], out: Path, what: str) -> None:
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} ({what}); outputs prob reproduced")
    assert "max abs diff" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp files


def test_pt2(lenet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, gm, x = lenet
    out = tmp_path / "lenet.pt2"
    assert main(argv + ["-o", str(out)] + SHAPE) == 0
    check_written(capsys, out, "torch.export")
    got = torch.export.load(str(out)).module()(data=x)
    torch.testing.assert_close(got["prob"], gm(data=x)["prob"])


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript(lenet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, gm, x = lenet
    out = tmp_path / "lenet.ts"
    assert main(argv + ["-o", str(out)]) == 0  # the net's own shape: batch 64
    check_written(capsys, out, "TorchScript")
    got = torch.jit.load(str(out))(data=x)
    torch.testing.assert_close(got["prob"], gm(data=x)["prob"])


def test_onnx(lenet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxscript")
    from onnx.reference import ReferenceEvaluator

    argv, gm, x = lenet
    out = tmp_path / "lenet.onnx"
    assert main(argv + ["-o", str(out)] + SHAPE) == 0
    check_written(capsys, out, "ONNX")
    (got,) = ReferenceEvaluator(str(out)).run(None, {"data": x.numpy()})
    np.testing.assert_allclose(got, gm(data=x)["prob"].detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_refuses_to_overwrite(lenet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, _, _ = lenet
    out = tmp_path / "lenet.ts"
    out.write_bytes(b"mine")
    assert main(argv + ["-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("caffe-fx export: error: ") and "already exists" in err
    assert out.read_bytes() == b"mine"
    assert main(argv + ["-o", str(out), "--force"]) == 0
    assert torch.jit.load(str(out)) is not None


def test_a_program_that_differs_is_not_kept(lenet, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv, _, _ = lenet

    def wrong(gm, inputs, path):
        path.write_bytes(b"program")
        return {k: v + 1e-3 for k, v in gm(**inputs).items()}

    monkeypatch.setattr(export_cmd, "_export_ts", wrong)
    out = tmp_path / "lenet.ts"
    assert main(argv + ["-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "does not reproduce output 'prob': max abs diff 0.001" in err
    assert not list(tmp_path.iterdir())


def _detection_net(tmp_path: Path) -> list[str]:
    from tests.cli.test_export_compiled import DETECT, _layers_only

    proto, weights = tmp_path / "net.prototxt", tmp_path / "w.caffemodel"
    proto.write_text(DETECT)
    _layers_only(weights)
    (tmp_path / "out").mkdir()
    return ["export", str(proto), str(weights)]


def test_onnx_failure_shows_the_layers_own_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """torch.onnx wraps the ExportError that DetectionOutput raises inside the trace in its
    TorchExportError ("Failed to export the model with torch.export..."): the line shows
    caffe_fx's error instead, and nothing else reaches the terminal."""
    pytest.importorskip("onnxscript")
    out = tmp_path / "out" / "n.onnx"
    assert main(_detection_net(tmp_path) + ["-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(
        "caffe-fx export: error: ONNX export failed: ExportError: layer 'detect' "
        "(DetectionOutput): its top has a data-dependent number of rows")
    assert "TorchExportError" not in captured.err and "nothing was written" in captured.err
    assert not list(out.parent.iterdir())


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_run_failure_is_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """DetectionOutput scripts but refuses to run in TorchScript: the check run's error is
    the layer's message, not the interpreter's traceback."""
    out = tmp_path / "out" / "n.ts"
    assert main(_detection_net(tmp_path) + ["-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("caffe-fx export: error: TorchScript check (load and run) failed: "
                          "RuntimeError: layer 'detect' (DetectionOutput): its top has a "
                          "data-dependent number of rows")
    assert not list(out.parent.iterdir())


def test_compare_checks_names_and_shapes() -> None:
    t = torch.zeros(2, 3)
    assert export_cmd.compare({"a": t + 1e-7}, {"a": t}, "X") == {"a": pytest.approx(1e-7)}
    with pytest.raises(ExportError, match=r"returns \['b'\]; expected \['a'\]"):
        export_cmd.compare({"b": t}, {"a": t}, "X")
    with pytest.raises(ExportError, match=r"shape \[3, 2\]; the compiled net gives \[2, 3\]"):
        export_cmd.compare({"a": t.T}, {"a": t}, "X")


def test_missing_onnx_packages(lenet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    argv, _, _ = lenet
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    assert main(argv + ["-o", str(tmp_path / "n.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install onnxscript" in err


def test_unknown_extension(lenet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, _, _ = lenet
    assert main(argv + ["-o", str(tmp_path / "n.pt")]) == 1
    assert "allowed: .pt2, .onnx, .ts" in capsys.readouterr().err


def test_weights_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", "net.prototxt", "-o", "x.pt2"])
    assert e.value.code == 2
    assert "WEIGHTS" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0
    assert ".pt2" in capsys.readouterr().out


def test_python_layers_are_refused_with_what_export_can_do(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Python layer's code cannot go into a .pt2/.onnx/.ts program: export says so
    (not the --trust-python-layers advice of the commands that run a net), imports
    nothing and writes nothing."""
    net = tmp_path / "p.prototxt"
    net.write_text(
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 1 dim: 3 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 2 } }\n'
        'layer { name: "dbl" type: "Python" bottom: "ip" top: "dbl" '
        'python_param { module: "never_imported" layer: "Double" } }\n')
    weights = tmp_path / "w.caffemodel"
    caffe_fx.save_caffemodel(weights, {"ip": [np.ones((2, 3), np.float32),
                                              np.zeros(2, np.float32)]})
    out = tmp_path / "p.pt2"
    assert main(["export", str(net), str(weights), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert (f"caffe-fx export: error: {net}: Python layers 'dbl' (python_param.module = "
            "'never_imported') run user code, which no exported program can hold") in err
    assert "--trust-python-layers" not in err
    assert not out.exists() and "never_imported" not in sys.modules
