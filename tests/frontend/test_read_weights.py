"""Tests for read_weights (caffe_fx/frontend/read.py) and compile()'s weight path.

Expected values: protobuf's own parse of caffemodels real Caffe saved
(tests/golden/wire/, tools/make_wire_goldens.py), Caffe's Net's parameters
(small_params.npz), and h5py's reading of the HDF5 caffemodels in ../shared/models.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import UnusedWeightsWarning, WeightsError
from caffe_fx.frontend.read import StoredBlob, read_weights
from caffe_fx.proto import caffe_pb2
from tests.nets.oracle import MODELS

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "wire"
SMALL_NET, SMALL = GOLDEN / "small.prototxt", GOLDEN / "small.caffemodel"
H5_DIR = MODELS / "jwcom79+myproject" / "examples" / "cifar10"
H5_MODELS = sorted(H5_DIR.glob("*.caffemodel.h5")) if H5_DIR.is_dir() else []


def _caffe_params() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "small_params.npz") as f:
        return {k: f[k] for k in f.files}


def test_binary_matches_protobuf_parse() -> None:
    net = caffe_pb2.NetParameter.FromString(SMALL.read_bytes())
    stored = read_weights(SMALL)
    assert list(stored) == [layer.name for layer in net.layer]
    for layer in net.layer:
        assert len(stored[layer.name]) == len(layer.blobs)
        for blob, proto in zip(stored[layer.name], layer.blobs):
            assert isinstance(blob, StoredBlob) and not blob.legacy
            assert blob.array.shape == tuple(proto.shape.dim)
            np.testing.assert_array_equal(blob.array.ravel(), np.array(proto.data, np.float32))


def test_last_of_two_layers_with_one_name_wins(tmp_path: Path) -> None:
    """Real Caffe (caffe-oracle forward with such a file: conv's weight all 1, then all
    2) loads 2: CopyTrainedLayersFrom copies every source layer in turn."""
    net = caffe_pb2.NetParameter()
    for name, value in (("ip", 1.0), ("other", 5.0), ("ip", 2.0), ("ip", 3.0)):
        blob = net.layer.add(name=name, type="InnerProduct").blobs.add()
        blob.shape.dim.append(1)
        blob.data.append(value)
    path = tmp_path / "twice.caffemodel"
    path.write_bytes(net.SerializeToString())
    with pytest.warns(UnusedWeightsWarning, match=r"twice.caffemodel: holds layers more "
                      r"than once: 'ip' \(3 times\); Caffe copies each in turn, so the "
                      r"last one's blobs are used"):
        stored = read_weights(path)
    assert list(stored) == ["ip", "other"]
    assert stored["ip"][0].array.tolist() == [3.0]


@pytest.mark.skipif(not H5_MODELS, reason=f"needs the HDF5 caffemodels in {H5_DIR}")
@pytest.mark.parametrize("path", H5_MODELS, ids=lambda p: p.name)
def test_hdf5_matches_h5py(path: Path) -> None:
    import h5py

    stored = read_weights(path)
    with h5py.File(path, "r") as f:
        group = f["data"]
        assert sorted(stored) == sorted(group)
        for name, blobs in stored.items():
            keys = sorted(group[name], key=int)
            assert len(blobs) == len(keys)
            for blob, key in zip(blobs, keys):
                expected = group[name][key][()]
                assert blob.array.dtype == np.float32 and blob.array.flags.owndata
                np.testing.assert_array_equal(blob.array, expected)
    assert stored["conv1"][0].array.shape == (32, 3, 5, 5)


def test_hdf5_converts_doubles_and_rejects_odd_names(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "w.caffemodel.h5"
    values = np.array([[0.1, 1 / 3], [2.5, -7.0]])
    with h5py.File(path, "w") as f:
        f.create_dataset("data/ip/0", data=values)
        f.create_dataset("data/ip/1", data=np.zeros(0))
    blobs = read_weights(path)["ip"]
    np.testing.assert_array_equal(blobs[0].array, values.astype(np.float32))
    assert blobs[1].array.shape == (0,)
    with h5py.File(path, "a") as f:
        f.create_dataset("data/ip/bias", data=np.zeros(2))
    with pytest.raises(WeightsError, match=r"/data/ip holds datasets not named by blob index"):
        read_weights(path)


def test_compile_loads_caffes_values_into_writable_parameters() -> None:
    gm = caffe_fx.compile(SMALL_NET, SMALL)
    state = gm.state_dict()
    caffe = _caffe_params()
    names = {"conv1": ("weight", "bias"), "bn1": ("mean", "variance", "scale_factor"),
             "scale1": ("weight", "bias"), "ip1": ("weight", "bias")}
    for layer, attrs in names.items():
        for i, attr in enumerate(attrs):
            np.testing.assert_array_equal(state[f"{layer}.{attr}"].numpy(),
                                          caffe[f"{layer}/{i}"])
    assert isinstance(gm.conv1.weight, torch.nn.Parameter) and gm.conv1.weight.requires_grad
    assert not isinstance(gm.bn1.mean, torch.nn.Parameter)
    assert all(t.device.type == "cpu" for t in state.values())
    # The weights live in the one buffer the file was read into.
    assert abs(gm.conv1.weight.data_ptr() - gm.ip1.weight.data_ptr()) < SMALL.stat().st_size
    with torch.no_grad():
        gm.ip1.weight.add_(1.0)
    np.testing.assert_array_equal(gm.ip1.weight.detach().numpy(), caffe["ip1/0"] + 1.0)


def test_layers_without_stored_weights_get_their_fillers() -> None:
    stored = {k: [b.array for b in v] for k, v in read_weights(SMALL).items() if k != "ip1"}
    gm = caffe_fx.compile(SMALL_NET, stored)
    np.testing.assert_array_equal(gm.conv1.weight.detach().numpy(), _caffe_params()["conv1/0"])
    # InnerProduct's default weight_filler is constant 0 (caffe.proto), bias too.
    assert not gm.ip1.weight.detach().any() and not gm.ip1.bias.detach().any()


def test_compile_never_aliases_the_callers_arrays() -> None:
    caffe = _caffe_params()
    weights = {"ip1": [caffe["ip1/0"].copy(), caffe["ip1/1"].copy()]}
    gm = caffe_fx.compile(SMALL_NET, weights)
    with torch.no_grad():
        gm.ip1.weight.zero_()
    np.testing.assert_array_equal(weights["ip1"][0], caffe["ip1/0"])


def test_compile_with_a_truncated_caffemodel_names_the_offset(tmp_path: Path) -> None:
    data = SMALL.read_bytes()
    path = tmp_path / "cut.caffemodel"
    ip1 = data.index(b"\n\x03ip1")  # the name, first field of the last layer
    path.write_bytes(data[:ip1 + 500])  # inside its weight blob
    with pytest.raises(WeightsError, match=r"cut\.caffemodel: not a valid caffemodel "
                                           r"\(truncated or corrupt\) at byte offset \d+ in "
                                           r"layer 'ip1': the layer is \d+ bytes long but the file ends \d+ bytes into it"):
        caffe_fx.compile(SMALL_NET, path)


@pytest.mark.skipif(not H5_MODELS, reason=f"needs the HDF5 caffemodels in {H5_DIR}")
def test_compile_with_hdf5_weights() -> None:
    import h5py

    path = H5_DIR / "cifar10_quick_iter_5000.caffemodel.h5"
    gm = caffe_fx.compile(H5_DIR / "cifar10_quick.prototxt", path)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(gm.ip1.weight.detach().numpy(), f["data/ip1/0"][()])
        np.testing.assert_array_equal(gm.conv3.bias.detach().numpy(), f["data/conv3/1"][()])


def _not_weights(path: Path) -> str:
    with pytest.raises(WeightsError) as e:
        caffe_fx.compile(SMALL_NET, path)
    return str(e.value)


def test_files_mixed_up_with_weights_are_named(tmp_path: Path) -> None:
    # Files Caffe's tools wrote: compute_image_mean's mean, a solver's snapshot (both from
    # the oracle), and the net's own prototxt given in the weights' place.
    root = GOLDEN.parent
    assert _not_weights(root / "data_feed" / "mean.binaryproto") == (
        f"{root / 'data_feed' / 'mean.binaryproto'}: not a caffemodel: it is a BlobProto of "
        "shape [1, 3, 12, 10] (a mean file, as compute_image_mean writes: transform_param's "
        "mean_file, or caffe.io.blobproto_to_array)")
    state = root / "training" / "snap_binary" / "tiny_iter_5.solverstate"
    assert _not_weights(state) == (
        f"{state}: not a caffemodel: it is a solver snapshot (.solverstate, of iteration 5): "
        "its weights are in 'snap_binary/tiny_iter_5.caffemodel'; a solver resumes from it "
        "(solver.restore)")
    assert _not_weights(SMALL_NET) == (
        f"{SMALL_NET}: not a caffemodel: it is a net prototxt (text): the weights come "
        "second, compile(prototxt, weights) or caffe.Net(prototxt, weights, phase)")
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    assert _not_weights(empty) == f"{empty}: the file is empty; allowed: a caffemodel"


@pytest.mark.parametrize(("suffix", "kind"), [
    (".pt", "a zip archive (an .npz, or torch.save's .pt)"),
    (".npz", "a zip archive (an .npz, or torch.save's .pt)"),
    (".safetensors", "a .safetensors file"),
    (".json", "text (JSON?)"),
])
def test_caffe_fx_dumps_given_as_caffemodels_say_how_to_convert_them(
        tmp_path: Path, suffix: str, kind: str) -> None:
    from caffe_fx.weights_io import output_format, read_blobs, write_blobs

    dump = tmp_path / f"small{suffix}"
    write_blobs(dump, read_blobs(SMALL), output_format(dump))
    renamed = dump.rename(tmp_path / "small.caffemodel")  # the suffix no longer says
    assert _not_weights(renamed) == (
        f"{renamed}: not a caffemodel: it is {kind}: caffe_fx reads weights from caffemodels "
        "(binary or HDF5): `caffe-fx convert FILE --prototxt NET` writes one from caffe_fx's "
        "other formats")


def test_a_truncated_caffemodel_is_not_taken_for_another_kind(tmp_path: Path) -> None:
    data = SMALL.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 3):
        path = tmp_path / f"cut{cut}.caffemodel"
        path.write_bytes(data[:cut])
        assert "not a valid caffemodel (truncated or corrupt)" in _not_weights(path)
