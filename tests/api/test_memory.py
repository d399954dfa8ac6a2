"""Memory a prototxt asks for is checked against what the machine has left before any
of it is taken (caffe_fx/_memory.py): compile()'s filled parameters, the pycaffe Net's
blobs at set-up and reshape, Blob.reshape.  The machine's availability is faked here;
nothing large is allocated."""
from __future__ import annotations

from pathlib import Path

import pytest

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx import _memory
from caffe_fx.errors import MemoryLimitError

MB = 1 << 20
GOLDEN_CLI = Path(__file__).resolve().parents[1] / "golden" / "cli"

# 1 x 40M floats in, through two TanH: 160 MB per blob, 480 MB of blobs.
BLOBS = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 40000000 } } }
layer { name: "t1" type: "TanH" bottom: "data" top: "t1" }
layer { name: "t2" type: "TanH" bottom: "t1" top: "t2" }
"""
# An 8000 x 8000 InnerProduct: a 256 MB weight that Caffe's filler fills.
PARAMS = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 8000 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 8000 } }
"""


@pytest.fixture
def only(monkeypatch):
    """`only(n)`: the machine has n bytes left."""
    def set_free(n: int) -> None:
        monkeypatch.setattr(_memory, "available", lambda: n)
    return set_free


def test_pycaffe_net_refuses_blobs_beyond_the_memory_left(tmp_path, only):
    net = tmp_path / "blobs.prototxt"
    net.write_text(BLOBS)
    only(300 * MB)
    with pytest.raises(MemoryLimitError, match=(
            rf"^{net}: the blobs' new memory: 457.76 MB \(the largest: data 152.59 MB, t1 152.59 MB, "
            r"t2 152.59 MB\), more than the 300.00 MB this machine has available; give the "
            r"inputs smaller shapes \(a smaller batch\), or set CAFFE_FX_MEMORY_CHECK=0")):
        caffe.Net(str(net), caffe.TEST)
    assert isinstance(MemoryLimitError("x"), MemoryError)


def test_compile_refuses_filled_parameters_beyond_the_memory_left(tmp_path, only):
    net = tmp_path / "params.prototxt"
    net.write_text(PARAMS)
    only(200 * MB)
    with pytest.raises(MemoryLimitError, match=(
            rf"^{net}: the parameters not read from weights \(Caffe's fillers fill them\)"
            r": 244.17 MB \(the largest: fc.weight 244.14 MB, fc.bias 31.25 KB\), more "
            r"than the 200.00 MB")):
        caffe_fx.compile(str(net))
    only(300 * MB)
    gm = caffe_fx.compile(str(net))  # fits
    assert gm.fc.weight.shape == (8000, 8000)


def test_reshape_checks_the_new_shapes(tmp_path, only):
    net = tmp_path / "small.prototxt"
    net.write_text(BLOBS.replace("dim: 40000000", "dim: 4"))
    n = caffe.Net(str(net), caffe.TEST)
    only(100 * MB)
    with pytest.raises(MemoryLimitError, match=r"^blob.reshape\(1, 40000000\): its data: "
                                               r"152.59 MB, more than the 100.00 MB"):
        n.blobs["data"].reshape(1, 40000000)
    assert n.blobs["data"].shape == (1, 4)
    only(250 * MB)  # the input blob fits, the two after it do not
    n.blobs["data"].reshape(1, 40000000)
    with pytest.raises(MemoryLimitError, match=r"the blobs' new memory: 305.18 MB "
                                               r"\(the largest: t1 152.59 MB, t2 152.59 MB"):
        n.reshape()  # data already holds its 152.59 MB
    assert n.blobs["t1"].shape == (1, 4)
    only(1 * MB)  # shrinking takes nothing new, however little is left
    n.blobs["data"].reshape(1, 4)
    n.reshape()
    assert n.blobs["t1"].shape == (1, 4)


def test_weights_read_from_a_file_are_not_counted():
    """Blobs adopted from weights (memory-mapped or already read) take no new memory."""
    from caffe_fx import pipeline
    from caffe_fx.binding import _to_allocate

    built = pipeline.lower(pipeline.prepare(PARAMS.replace("8000", "8")))
    assert dict(_to_allocate(built, {})) == {"fc.weight": 8 * 8 * 4, "fc.bias": 8 * 4}
    assert dict(_to_allocate(built, {"fc": object()})) == {}


def test_switch_and_machine_reading(monkeypatch):
    free = _memory.available()
    assert free is None or free > 0  # Linux: MemAvailable + SwapFree, or the cgroup's
    monkeypatch.setenv("CAFFE_FX_MEMORY_CHECK", "0")
    assert _memory.available() is None
    _memory.check_fits([("x", 1 << 50)], "w", "the blobs", "r")  # off: no error


def test_a_data_feed_checks_its_read_ahead_batches(tmp_path, only, monkeypatch):
    """HDF5Data at batch 4M of 6 floats: 5 batches (3 prefetched, one being read, one in
    use) of data and label, 534 MB, refused before the reader thread starts."""
    import shutil

    from caffe_fx import pipeline
    from caffe_fx.data import open_feed
    from caffe_fx.proto import caffe_pb2

    golden = tmp_path / "cli"
    shutil.copytree(GOLDEN_CLI / "hdf5", golden / "hdf5")
    shutil.copy(GOLDEN_CLI / "train_list.txt", golden)
    net = golden / "net.prototxt"
    net.write_text((GOLDEN_CLI / "net.prototxt").read_text().replace("batch_size: 4",
                                                                     "batch_size: 4000000"))
    monkeypatch.chdir(golden)
    prepared = pipeline.prepare(str(net), phase="train")
    only(400 * MB)
    with pytest.raises(MemoryLimitError, match=(
            rf"^{net}: the data layers' batches \(3 read ahead, one being read, one in use\)"
            r": 534.06 MB \(the largest: data 457.76 MB, label 76.29 MB\), more than the "
            r"400.00 MB this machine has available; give the data layers a smaller "
            r"batch_size")):
        open_feed(prepared.net, phase=caffe_pb2.TRAIN, where=str(net))
