"""caffe_fx.pycaffe.Net behaves as real pycaffe's Net on the forward side.

Goldens: tools/make_pycaffe_goldens.py ran tests/pycaffe/net_scripts.py under BVLC
pycaffe 1.0 and stored names, shapes and every blob after each step; the same script runs
here with caffe_fx.pycaffe.  LeNet and its weights are read from ../shared/models.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx.pycaffe as caffe
from caffe_fx import errors
from caffe_fx.proto import caffe_pb2
from tests.pycaffe import net_scripts

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_net"
LENET = ("ethereon+caffe-tensorflow", "examples", "mnist")


def net_files(name: str, tmp_path: Path, shared: Path | None) -> tuple[str, str | None]:
    if name == "lenet":
        folder = shared.joinpath(*LENET)
        return str(folder / "lenet.prototxt"), str(folder / "lenet_iter_10000.caffemodel")
    path = tmp_path / f"{name}.prototxt"
    path.write_text(net_scripts.NETS[name])
    return str(path), None


def golden(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    meta = json.loads((GOLDEN / f"{name}.json").read_text())
    with np.load(GOLDEN / f"{name}.npz") as z:
        return meta, {k: z[k] for k in z.files}


@pytest.fixture
def shared_or_none(request: pytest.FixtureRequest) -> Path | None:
    if request.node.callspec.params["name"] == "lenet":
        return request.getfixturevalue("shared_models")
    return None


@pytest.fixture(scope="module")
def small_net(tmp_path_factory: pytest.TempPathFactory) -> caffe.Net:
    path = tmp_path_factory.mktemp("small") / "small.prototxt"
    path.write_text(net_scripts.SMALL)
    return caffe.Net(str(path), caffe.TEST)


@pytest.mark.parametrize("name", ["small", "bn", "lenet"])
def test_script_matches_real_pycaffe(name, tmp_path, shared_or_none):
    expected_meta, expected = golden(name)
    prototxt, weights = net_files(name, tmp_path, shared_or_none)
    meta, arrays = net_scripts.run(caffe, prototxt, weights, net_scripts.RANGES[name],
                                   net_scripts.BATCHES[name])
    assert json.loads(json.dumps(meta)) == expected_meta
    assert sorted(arrays) == sorted(expected)
    for key, want in expected.items():
        got = arrays[key]
        assert got.shape == want.shape, key
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
        assert float(np.abs(got - want).max(initial=0.0)) <= 1e-5 * scale, key


def test_module_surface():
    assert caffe.TRAIN == caffe_pb2.TRAIN == 0 and caffe.TEST == caffe_pb2.TEST == 1
    assert caffe.proto.caffe_pb2 is caffe_pb2
    assert caffe.__version__ == "1.0.0"  # what the oracle's pycaffe (BVLC 1.0) reports
    assert caffe.io.Transformer is not None and caffe.NetSpec is caffe.net_spec.NetSpec
    types = caffe.layer_type_list()
    assert types == sorted(types) and {"Input", "Data", "Convolution", "Split"} <= set(types)


def test_set_mode_gpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(errors.DeviceError, match="torch.cuda is not available"):
        caffe.set_mode_gpu()
    caffe.set_mode_cpu()


def test_blob_accessors(small_net):
    blob = small_net.blobs["data"]
    assert (blob.num, blob.channels, blob.height, blob.width, blob.count) == (2, 3, 8, 8, 384)
    assert small_net.blobs["prob"].height == 1  # LegacyShape: a missing axis counts as 1
    assert blob.diff.shape == blob.shape and not blob.diff.any()
    with pytest.raises(AttributeError):
        blob.data = np.zeros(blob.shape, np.float32)  # pycaffe: data is read-only


def test_params_share_memory_with_the_module(small_net):
    weight = small_net.params["ip1"][0].data
    weight[...] = 0
    small_net.params["ip1"][1].data[...] = 1
    small_net.params["ip2"][0].data[...] = 0
    small_net.params["ip2"][1].data[...] = 3
    out = small_net.forward(data=np.ones((2, 3, 8, 8), np.float32))
    np.testing.assert_array_equal(small_net.blobs["sum"].data, np.full((2, 5), 4, np.float32))
    assert sorted(out) == ["loss", "prob"] and out["prob"] is small_net.blobs["prob"].data


def test_save_and_copy_from_round_trip(small_net, tmp_path):
    path = tmp_path / "small.caffemodel"
    small_net.params["conv1"][0].data[...] = 0.25
    small_net.save(str(path))
    other = caffe.Net(_write(tmp_path), caffe.TEST, weights=str(path))
    np.testing.assert_array_equal(other.params["conv1"][0].data, 0.25)
    third = caffe.Net(_write(tmp_path), str(path), caffe.TEST)  # legacy argument order
    np.testing.assert_array_equal(third.params["ip1"][0].data, small_net.params["ip1"][0].data)


def test_share_with(small_net, tmp_path):
    other = caffe.Net(_write(tmp_path), caffe.TEST)
    other.share_with(small_net)
    small_net.params["ip1"][1].data[...] = 7
    np.testing.assert_array_equal(other.params["ip1"][1].data, 7)


def _write(tmp_path: Path) -> str:
    path = tmp_path / "again.prototxt"
    path.write_text(net_scripts.SMALL)
    return str(path)


def test_forward_input_errors(small_net):
    with pytest.raises(errors.InputError, match=r"do not match the net's inputs \['data'\]"):
        small_net.forward(image=np.zeros((2, 3, 8, 8)))
    with pytest.raises(errors.InputError, match="batch size 2"):
        small_net.forward(data=np.zeros((4, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"does not fit the blob of shape \[2, 3, 8, 8\]"):
        small_net.forward(data=np.zeros((2, 3, 7, 8)))


def test_unknown_names_raise_key_error(small_net):
    with pytest.raises(KeyError, match="no blob 'nope' in the net"):
        small_net.blobs["nope"]
    with pytest.raises(KeyError, match="no blob 'nope'"):
        small_net.forward(blobs=["nope"])
    with pytest.raises(ValueError, match="end='nope' is not a layer of the net"):
        small_net.forward(end="nope")
    with pytest.raises(KeyError, match=r"no layer with parameters 'relu1' in the net; "
                                        r"layers with parameters: \["):
        small_net.params["relu1"]


def test_a_lone_blob_name_is_refused_not_read_as_its_letters(small_net):
    # Real pycaffe fails on `self.outputs + blobs` (list + str: TypeError).
    out = small_net.outputs[0]
    for call, arg in ((small_net.forward, "blobs"), (small_net.backward, "diffs"),
                      (small_net.forward_all, "blobs")):
        with pytest.raises(errors.InputError, match=(
                rf"{call.__name__}\({arg}='{out}'\): allowed: a list of blob names, "
                rf"e.g. {arg}=\['{out}'\]")):
            call(**{arg: out})


def test_phase_is_required(tmp_path):
    with pytest.raises(errors.InputError, match="phase is required"):
        caffe.Net(_write(tmp_path))


def test_loss_layers_without_tops_get_automatic_blobs(tmp_path):
    # Net::AppendTop names a missing loss top "(automatic)"; a second one here gets "#2"
    # (Caffe reuses the name; see README, "Deliberate differences").  Not outputs; loss
    # weight 1; saving writes the layers as given.  Values: tests/golden/backward.
    proto = tmp_path / "auto.prototxt"
    proto.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 4 } } }\n'
        'layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 3 dim: 4 } } }\n'
        'layer { name: "l1" type: "EuclideanLoss" bottom: "data" bottom: "t" }\n'
        'layer { name: "l2" type: "EuclideanLoss" bottom: "data" bottom: "t" '
        'loss_weight: 0.5 }\n')
    net = caffe.Net(str(proto), caffe.TEST)
    assert net.top_names["l1"] == ["(automatic)"] and net.top_names["l2"] == ["(automatic)#2"]
    assert net.outputs == []
    weights = net.blob_loss_weights
    assert (weights["(automatic)"], weights["(automatic)#2"]) == (1.0, 0.5)
    assert net.blobs["(automatic)#2"].diff == 0.5
    net.save(str(tmp_path / "auto.caffemodel"))
    saved = caffe_pb2.NetParameter.FromString((tmp_path / "auto.caffemodel").read_bytes())
    assert {layer.name: list(layer.top) for layer in saved.layer
            if layer.name in ("l1", "l2")} == {"l1": [], "l2": []}


def test_save_writes_what_net_to_proto_does(tmp_path):
    """Real pycaffe's Net.save of tiny.prototxt in TEST (tests/golden/pycaffe_misc,
    tools/make_pycaffe_misc_goldens.py): no state, every layer with its phase, the loss
    with loss_weight 1, the implicit Splits; blobs aside, the same NetParameter."""
    from google.protobuf import text_format

    from caffe_fx.proto import caffe_pb2

    golden = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_misc"
    want = text_format.Parse((golden / "tiny_saved.prototxt").read_text(),
                             caffe_pb2.NetParameter())
    path = tmp_path / "tiny.caffemodel"
    caffe.Net(str(golden / "tiny.prototxt"), caffe.TEST).save(str(path))
    got = caffe_pb2.NetParameter.FromString(path.read_bytes())
    assert [len(layer.blobs) for layer in got.layer] == [0, 0, 2, 0, 1, 0, 0, 0]
    for layer in got.layer:
        del layer.blobs[:]
    assert text_format.MessageToString(got) == text_format.MessageToString(want)
