"""`caffe.Net()` on a file it cannot open raises what pycaffe's CheckFile raises: a
RuntimeError "Could not open file X" (tests/golden/pycaffe_misc/errors.json, real pycaffe),
which pycaffe code catches as such; ours adds the system's reason and is a CaffeFxError."""
from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch

import caffe_fx
import caffe_fx.optim
import caffe_fx.pycaffe as caffe
from caffe_fx.errors import CaffeFxError, FileOpenError, InputError, WeightsError

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


@pytest.mark.parametrize("make, cls, message", [
    (lambda net: caffe.Net(None, caffe.TEST), InputError,
     r"^the net is given as NoneType; allowed: a prototxt path \(str or os.PathLike\), "
     r"prototxt text or a caffe_pb2.NetParameter$"),
    (lambda net: net.copy_from(None), WeightsError,
     r"^copy_from: the caffemodel file is given as NoneType; allowed: a path"),
    (lambda net: net.save(None), InputError, r"^save: the caffemodel file is given as "),
    (lambda net: net.save_hdf5(3), InputError, r"^save_hdf5: the HDF5 file is given as int"),
    (lambda net: net.load_hdf5(None), WeightsError, r"^load_hdf5: the HDF5 file is given as "),
    (lambda net: caffe.SGDSolver(None), InputError,
     r"^the solver file is given as NoneType; allowed: a path \(str or os.PathLike\)$"),
    (lambda net: caffe_fx.Solver(net), InputError, r"^the solver file is given as Net"),
    (lambda net: caffe_fx.optim.from_solver(None, torch.nn.Linear(1, 1)), InputError,
     r"^the solver file is given as NoneType"),
], ids=["Net", "copy_from", "save", "save_hdf5", "load_hdf5", "SGDSolver", "Solver",
        "from_solver"])
def test_a_file_argument_that_is_not_a_path_says_what_it_got(make, cls, message):
    """pycaffe's Boost signatures refuse these (ArgumentError); the facade names the
    argument and what it was given as, instead of os.fspath's TypeError or an assert."""
    net = caffe.Net(NET, caffe.TEST)
    with pytest.raises(cls, match=message):
        make(net)


def test_legacy_positional_weights_without_a_phase_says_how_it_read_them():
    with pytest.raises(InputError, match=r"phase is required; allowed: caffe.TRAIN, "
                                         r"caffe.TEST \('test' was taken as the weights file "
                                         r"of the legacy Net\(network_file, pretrained_file, "
                                         r"phase\)\)"):
        caffe.Net(NET, "test")
