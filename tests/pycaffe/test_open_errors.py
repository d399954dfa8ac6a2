"""`caffe.Net()` on a file it cannot open raises what pycaffe's CheckFile raises: a
RuntimeError "Could not open file X" (tests/golden/pycaffe_misc/errors.json, real pycaffe),
which pycaffe code catches as such; ours adds the system's reason and is a CaffeFxError."""
from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

import caffe_fx.pycaffe as caffe
from caffe_fx.errors import CaffeFxError, FileOpenError, WeightsError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_misc"
ERRORS = json.loads((GOLDEN / "errors.json").read_text())
NET = str(GOLDEN / "classifier.prototxt")


@pytest.mark.parametrize("case, make", [
    ("net_missing_prototxt", lambda: caffe.Net("nope.prototxt", caffe.TEST)),
    ("net_missing_weights", lambda: caffe.Net(NET, caffe.TEST, weights="nope.caffemodel")),
    ("net_missing_weights_legacy", lambda: caffe.Net(NET, "nope.caffemodel", caffe.TEST)),
])
def test_net_on_a_missing_file_is_pycaffes_runtime_error(case, make, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    kind, message = ERRORS[case]
    with pytest.raises(getattr(builtins, kind)) as e:  # RuntimeError
        make()
    assert isinstance(e.value, FileOpenError) and isinstance(e.value, CaffeFxError)
    assert str(e.value) == f"{message} (No such file or directory)"


def test_copy_from_a_missing_file_stays_a_weights_error(tmp_path):
    # Real pycaffe aborts the process here (a CHECK in Net::CopyTrainedLayersFrom).
    net = caffe.Net(NET, caffe.TEST)
    with pytest.raises(WeightsError, match="no such caffemodel file"):
        net.copy_from(str(tmp_path / "nope.caffemodel"))


def test_prototxt_text_is_not_taken_for_a_path():
    net = caffe.Net('name: "empty"\n', caffe.TEST)  # Caffe builds an empty net too
    assert list(net.blobs) == [] and net.forward() == {}
