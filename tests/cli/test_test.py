"""`caffe-fx test` against real `caffe test` (tests/golden/cli/caffe_test.txt,
tools/make_cli_goldens.py): an HDF5Data net scored for 4 batches of 5 over a 12-row file
(so the reader wraps), with weights from Caffe's fillers.

Every line must be Caffe's, numbers within 1e-5 relative (Caffe prints six digits).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from caffe_fx.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cli"
NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]\d+)?")

def assert_lines_match(got: list[str], want: list[str]) -> None:
    assert [NUMBER.sub("#", x) for x in got] == [NUMBER.sub("#", x) for x in want]
    for a, b in zip(got, want):
        for x, y in zip(NUMBER.finditer(a), NUMBER.finditer(b)):
            assert float(x[0]) == pytest.approx(float(y[0]), rel=1e-5, abs=1e-6), (a, b)


def test_scores_are_caffes(capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)  # the net's HDF5 list and files are relative to it
    assert main(["test", "-model", "net.prototxt", "-weights", "init.caffemodel",
                 "-iterations", "4"]) == 0
    got = capsys.readouterr().out.splitlines()
    assert got[0] == "Use CPU."
    want = (GOLDEN / "caffe_test.txt").read_text().splitlines()
    assert_lines_match(got[1:], want)


def test_gflags_spellings(capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    assert main(["test", "--model=net.prototxt", "--weights", "init.caffemodel",
                 "-iterations=1"]) == 0
    want = (GOLDEN / "caffe_test.txt").read_text().splitlines()
    got = capsys.readouterr().out.splitlines()
    assert got[2:4] == want[1:3]  # batch 0 is batch 0 of the 4-batch run


def test_weights_are_required_and_errors_are_one_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    with pytest.raises(SystemExit) as e:
        main(["test", "-model", "net.prototxt"])
    assert e.value.code == 2
    assert "-weights" in capsys.readouterr().err
    assert main(["test", "-model", "net.prototxt", "-weights", "absent.caffemodel"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("caffe-fx test: error: ") and "absent.caffemodel" in err
    assert main(["test", "-model", "net.prototxt", "-weights", "init.caffemodel",
                 "-gpu", "7"]) == 1
    assert "no CUDA device 7" in capsys.readouterr().err


def test_python_data_layer_scores_as_caffes_when_trusted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/golden/cli/python: a Python data layer's batches, scored by `caffe test`
    built WITH_PYTHON_LAYER."""
    monkeypatch.chdir(GOLDEN / "python")
    monkeypatch.syspath_prepend(str(GOLDEN / "python"))
    monkeypatch.delitem(sys.modules, "pydata", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ in the goldens
    assert main(["test", "-model", "net.prototxt", "-weights", "init.caffemodel",
                 "-iterations", "3", "--trust-python-layers"]) == 0
    got = capsys.readouterr().out.splitlines()
    assert got[0] == "Use CPU."
    want = (GOLDEN / "python" / "caffe_test.txt").read_text().splitlines()
    assert_lines_match(got[1:], want)
