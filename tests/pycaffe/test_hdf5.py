"""Net.save_hdf5/load_hdf5 and Net.set_input_arrays (MemoryData) against real pycaffe
(tests/golden/pycaffe_misc, tools/make_pycaffe_misc_goldens.py)."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import caffe_fx.pycaffe as caffe
from caffe_fx.errors import InputArrayError, WeightsError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_misc"
OUT = np.load(GOLDEN / "outputs.npz")
ERRORS = json.loads((GOLDEN / "errors.json").read_text())
NET = str(GOLDEN / "classifier.prototxt")


def test_load_hdf5_written_by_caffe() -> None:
    net = caffe.Net(NET, caffe.TEST)
    net.load_hdf5(str(GOLDEN / "weights.caffemodel.h5"))
    got = net.forward(data=OUT["hdf5_input"])["prob"]
    np.testing.assert_allclose(got, OUT["hdf5_prob"], rtol=1e-5, atol=1e-6)


def test_save_hdf5_has_caffes_layout(tmp_path: Path) -> None:
    net = caffe.Net(NET, caffe.TEST, weights=str(GOLDEN / "weights.caffemodel"))
    ours = tmp_path / "ours.caffemodel.h5"
    net.save_hdf5(str(ours))

    def contents(path: Path) -> dict[str, np.ndarray | None]:
        out: dict[str, np.ndarray | None] = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda k, v: out.__setitem__(
                k, v[()] if isinstance(v, h5py.Dataset) else None))
        return out

    want, got = contents(GOLDEN / "weights.caffemodel.h5"), contents(ours)
    assert list(got) == list(want)  # every layer's group, datasets only for blobs
    for key, value in want.items():
        if value is not None:
            assert got[key].dtype == np.float32
            np.testing.assert_array_equal(got[key], value)


def test_load_hdf5_shape_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("data/ip1/0", data=np.zeros((5, 3), np.float32))
    with pytest.raises(WeightsError, match="layer 'ip1'.*shape \\[5, 3\\].*\\[5, 64\\]"):
        caffe.Net(NET, caffe.TEST).load_hdf5(str(bad))


@pytest.fixture()
def memory_net() -> caffe.Net:
    net = caffe.Net(str(GOLDEN / "memory.prototxt"), caffe.TRAIN)
    net.params["ip1"][0].data[...] = OUT["memory_ip1_w"]
    net.params["ip1"][1].data[...] = OUT["memory_ip1_b"]
    return net


def test_set_input_arrays_batches_wrap(memory_net: caffe.Net) -> None:
    assert memory_net.blobs["label"].data.shape == tuple(OUT["memory_label_shape_setup"])
    memory_net.set_input_arrays(OUT["memory_data"].copy(), OUT["memory_labels"].copy())
    for k in range(3):
        memory_net.forward()
        for blob in ("data", "label", "ip1"):
            want = OUT[f"memory_{k}_{blob}"]
            got = memory_net.blobs[blob].data
            assert got.shape == want.shape, (k, blob)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["memory_not_multiple", "memory_wrong_dims", "memory_float64"])
def test_set_input_arrays_errors(memory_net: caffe.Net, case: str) -> None:
    data, labels = OUT["memory_data"], OUT["memory_labels"]
    args = {"memory_not_multiple": (data[:3], labels[:3]),
            "memory_wrong_dims": (np.zeros((4, 3, 3, 3), np.float32), labels),
            "memory_float64": (data.astype(np.float64), labels)}[case]
    kind, message = ERRORS[case]
    with pytest.raises(InputArrayError, match=message) as err:
        memory_net.set_input_arrays(*args)
    assert isinstance(err.value, RuntimeError) and kind == "RuntimeError"


def test_set_input_arrays_needs_memory_data() -> None:
    _, message = ERRORS["memory_not_memory"]
    with pytest.raises(InputArrayError, match=message):
        caffe.Net(NET, caffe.TEST).set_input_arrays(OUT["memory_data"], OUT["memory_labels"])
