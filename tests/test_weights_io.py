"""caffe_fx.save_caffemodel, the readers/writers of caffe_fx/weights_io.py, caffe_fx/_atomic.py.

Arrays come from real Caffe (tests/golden/convert/, made by tools/make_convert_goldens.py);
tests/cli/test_convert.py proves that real Caffe loads what is written here.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx._atomic import atomic_path, atomic_write
from caffe_fx.errors import InputError, OutputExistsError, WeightsError
from caffe_fx.frontend.read import StoredBlob, read_weights
from caffe_fx.proto import caffe_pb2
from caffe_fx.weights_io import blobs_to_flat, flat_to_blobs, net_layout, output_format, read_blobs
from tests.cli.test_convert import caffe_params, golden


def stored(path: Path) -> dict[str, np.ndarray]:
    return {f"{n}.{i}": b.array for n, bl in read_weights(path).items() for i, b in enumerate(bl)}


@pytest.mark.parametrize("fmt", ["binary", "hdf5"])
def test_save_compiled_module_with_its_prototxt(tmp_path, fmt):
    proto, model, record = golden("small")
    gm = caffe_fx.compile(proto, model)
    out = caffe_fx.save_caffemodel(tmp_path / "w.caffemodel", gm, proto, format=fmt)
    got = stored(out)
    want = caffe_params(record)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    if fmt == "binary":
        net = caffe_pb2.NetParameter.FromString(out.read_bytes())
        assert [(lp.name, lp.type, len(lp.blobs)) for lp in net.layer] == [
            ("data", "Input", 0), ("conv1", "Convolution", 2), ("bn1", "BatchNorm", 3),
            ("scale1", "Scale", 2), ("prelu1", "PReLU", 1), ("fc", "InnerProduct", 2)]


def test_save_mapping_without_prototxt_writes_names_and_blobs(tmp_path):
    _, _, record = golden("named")
    weights = {"conv/1x1": [torch.from_numpy(record["param/conv/1x1/0"])],
               "bias": [record["param/bias/0"]]}
    out = caffe_fx.save_caffemodel(tmp_path / "w.caffemodel", weights)
    net = caffe_pb2.NetParameter.FromString(out.read_bytes())
    assert [(lp.name, lp.type, [list(b.shape.dim) for b in lp.blobs]) for lp in net.layer] == [
        ("conv/1x1", "", [[4, 2, 1, 1]]), ("bias", "", [[2]])]
    np.testing.assert_array_equal(np.asarray(net.layer[0].blobs[0].data, np.float32),
                                  record["param/conv/1x1/0"].ravel())


def test_binary_writer_matches_protobufs_own_parse(tmp_path):
    """The streamed wire format parses to the message protobuf would have built."""
    _, model, _ = golden("named")
    blobs = read_weights(model)
    out = caffe_fx.save_caffemodel(tmp_path / "w.caffemodel",
                                   {n: b for n, b in blobs.items() if b})
    ours = caffe_pb2.NetParameter.FromString(out.read_bytes())
    want = caffe_pb2.NetParameter()
    for name, bl in blobs.items():
        if bl:
            lp = want.layer.add(name=name)
            for b in bl:
                bp = lp.blobs.add()
                bp.shape.dim.extend(b.array.shape)
                bp.data.extend(b.array.ravel().tolist())
    assert ours == want


def test_legacy_blobs_keep_their_legacy_shape(tmp_path):
    """Old caffemodels store InnerProduct weights as (1, 1, N, K) in num/channels/...;
    Blob::ShapeEquals accepts that only through the legacy fields, so they are kept."""
    proto, _, record = golden("small")
    net = caffe_pb2.NetParameter()
    lp = net.layer.add(name="fc", type="InnerProduct")
    for arr in (record["param/fc/0"], record["param/fc/1"]):
        b = lp.blobs.add()
        b.num, b.channels, b.height, b.width = (1,) * (4 - arr.ndim) + arr.shape
        b.data.extend(arr.ravel().tolist())
    old = tmp_path / "old.caffemodel"
    old.write_bytes(net.SerializeToString())

    caffe_fx.save_caffemodel(tmp_path / "re.caffemodel", read_weights(old))
    again = caffe_pb2.NetParameter.FromString((tmp_path / "re.caffemodel").read_bytes())
    b0 = again.layer[0].blobs[0]
    assert (b0.num, b0.channels, b0.height, b0.width) == (1, 1, 5, 64)
    assert not b0.HasField("shape")

    layout = net_layout(proto)
    flat, skipped = blobs_to_flat(read_blobs(old, layout), str(old), layout)
    assert skipped == [] and flat["fc.weight"].shape == (5, 64)
    np.testing.assert_array_equal(flat["fc.weight"], record["param/fc/0"])


def test_shared_params_are_written_on_every_layer(tmp_path):
    proto, model, record = golden("named")
    gm = caffe_fx.compile(proto, model)
    out = caffe_fx.save_caffemodel(tmp_path / "w.caffemodel", gm, proto)
    got = stored(out)
    np.testing.assert_array_equal(got["ip_a.0"], record["param/ip_a/0"])
    np.testing.assert_array_equal(got["ip_b.0"], record["param/ip_b/0"])


def test_save_refuses_to_overwrite_and_layers_the_net_lacks(tmp_path):
    proto, _, _ = golden("small")
    target = tmp_path / "w.caffemodel"
    target.write_bytes(b"keep")
    weights = {"fc": [np.zeros((5, 64), np.float32), np.zeros(5, np.float32)]}
    with pytest.raises(OutputExistsError, match=r"w\.caffemodel: already exists"):
        caffe_fx.save_caffemodel(target, weights)
    assert target.read_bytes() == b"keep"
    caffe_fx.save_caffemodel(target, weights, force=True)
    assert stored(target)["fc.0"].shape == (5, 64)
    with pytest.raises(WeightsError, match=r"layers the net lacks: fc9; layers of the net: "
                                           r"data, conv1"):
        caffe_fx.save_caffemodel(tmp_path / "x.caffemodel", {"fc9": []}, proto)
    with pytest.raises(InputError, match=r"format = 'npz'; allowed: 'binary', 'hdf5'"):
        caffe_fx.save_caffemodel(tmp_path / "y", weights, format="npz")  # type: ignore
    with pytest.raises(InputError, match=r"layer 'fc' maps to one array"):
        caffe_fx.save_caffemodel(tmp_path / "z", {"fc": np.zeros(3)})
    with pytest.raises(InputError, match=r"allowed: a GraphModule from caffe_fx.compile"):
        caffe_fx.save_caffemodel(tmp_path / "z", [np.zeros(3)])  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"save_caffemodel: path is dict; the file comes "
                                         r"first: save_caffemodel\(path, weights_or_module\)"):
        caffe_fx.save_caffemodel(weights, tmp_path / "w2")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"save_caffemodel: path is given as int; allowed: "
                                         r"a path \(str or os.PathLike\)$"):
        caffe_fx.save_caffemodel(3, weights)  # type: ignore[arg-type]


@pytest.mark.parametrize("path, fmt", [
    ("w.pt", "pt"), ("w.PTH", "pt"), ("w.caffemodel", "caffemodel"),
    ("w.caffemodel.h5", "hdf5"), ("w.hdf5", "hdf5"), ("w.npz", "npz"), ("w.json", "json"),
    ("w.safetensors", "safetensors"), ("out/", "npy"), ("weights", "npy"),
])
def test_output_format_from_the_path(path, fmt):
    assert output_format(path) == fmt


def test_existing_folder_is_an_npy_output(tmp_path):
    (tmp_path / "w.v2").mkdir()
    assert output_format(tmp_path / "w.v2") == "npy"


def test_flat_keys_must_be_complete():
    with pytest.raises(WeightsError, match=r"layer 'fc' has blobs \[0, 2\]"):
        flat_to_blobs({"fc.0": np.zeros(1), "fc.2": np.zeros(1)}, "w.npz")
    blobs = flat_to_blobs({"a.b.1": np.ones(2), "a.b.0": np.zeros(3)}, "w.npz")
    assert [b.array.shape for b in blobs["a.b"]] == [(3,), (2,)]
    assert isinstance(blobs["a.b"][0], StoredBlob)


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "w.bin"
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_atomic_write_replaces_only_with_force(tmp_path):
    target = tmp_path / "w.bin"
    with atomic_write(target) as f:
        f.write(b"one")
    with pytest.raises(OutputExistsError, match=r"w\.bin: already exists"), \
            atomic_write(target) as f:
        f.write(b"two")
    assert target.read_bytes() == b"one"
    with atomic_write(target, force=True) as f:
        f.write(b"two")
    assert target.read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["w.bin"]
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_every_key_that_cannot_be_placed_is_named_at_once():
    arrays = {"a.0": np.zeros(2, np.float32), "a.2": np.zeros(2, np.float32),
              "b.1": np.zeros(1, np.float32), "weird": np.zeros(1, np.float32)}
    with pytest.raises(WeightsError) as e:
        flat_to_blobs(arrays, "w.npz")
    assert str(e.value).splitlines() == [
        "w.npz: 1 key(s) are not '<layer>.<blob index>': 'weird'; keys named after a "
        "compiled net's state_dict need that net: pass the prototxt (--prototxt NET)",
        "w.npz: layer 'a' has blobs [0, 2]; blob indices must be 0..1 without gaps",
        "w.npz: layer 'b' has blobs [1]; blob indices must be 0..0 without gaps"]
