"""Python layers (type "Python", python_param) in caffe_fx.pycaffe match real pycaffe.

Goldens: tools/make_pylayer_goldens.py ran nets holding the layers of
tests/pycaffe/pylayers/ through BVLC Caffe 1.0's PythonLayer
(include/caffe/layers/python_layer.hpp) forward and backward and kept every blob and diff.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
import caffe_fx.pycaffe as caffe
from tests.pycaffe.golden_nets import load_golden, net_from_golden
from caffe_fx import errors

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pylayer"
PYLAYERS = Path(__file__).resolve().parent / "pylayers"
CASES = sorted(p.stem for p in GOLDEN.glob("*.npz"))


@pytest.fixture(autouse=True)
def pylayers_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The layer modules importable, as PYTHONPATH makes them for pycaffe; forgotten after."""
    monkeypatch.syspath_prepend(str(PYLAYERS))
    yield
    for name in ("pyloss", "pyscale"):
        sys.modules.pop(name, None)


def load(case: str) -> tuple[dict, dict[str, np.ndarray]]:
    return load_golden(GOLDEN / f"{case}.npz")


def make_net(case: str, tmp_path: Path) -> tuple[caffe.Net, dict, dict[str, np.ndarray]]:
    return net_from_golden(GOLDEN / f"{case}.npz", tmp_path)


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = float(np.abs(want).max()) if want.size else 0.0
    assert got.shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale + 1e-12, err_msg=what)


def test_goldens_are_present() -> None:
    assert CASES == ["affine_two_tops_train", "scale_then_pyloss"]


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_pycaffe(case: str, tmp_path: Path) -> None:
    net, meta, g = make_net(case, tmp_path)
    assert list(net.blobs) == list(meta["blobs"])
    for name in meta["blobs"]:
        assert_close(net.blobs[name].data, g[f"data/{name}"], f"data of {name}")


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_pycaffe(case: str, tmp_path: Path) -> None:
    net, meta, g = make_net(case, tmp_path)
    net.backward()
    for name in meta["blobs"]:
        assert_close(net.blobs[name].diff, g[f"diff/{name}"], f"diff of {name}")
    assert sorted(net.params) == sorted({k.split("/")[1] for k in g if k.startswith("pdiff/")})
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            assert_close(blob.diff, g[f"pdiff/{layer}/{i}"], f"param diff {layer}/{i}")


def test_layer_object_is_the_users(tmp_path: Path) -> None:
    net, _, g = make_net("affine_two_tops_train", tmp_path)
    layer = net.layers[list(net._layer_names).index("affine")]
    assert type(layer).__name__ == "AffineLayer" and isinstance(layer, caffe.Layer)
    assert layer.type == "Python" and layer.phase == caffe.TRAIN
    assert layer.param_str == '{"offset": 0.25}' and layer.offset == 0.25
    assert layer.param_str_ == layer.param_str  # Fast R-CNN's layers read param_str_
    assert layer.blobs[0] is net.params["affine"][0]
    assert_close(layer.blobs[1].data, g["param/affine/1"], "bias")


def test_new_input_shape_reshapes_the_same_layer(tmp_path: Path) -> None:
    net, _, g = make_net("scale_then_pyloss", tmp_path)
    layer = net.layers[list(net._layer_names).index("scale")]
    data = np.concatenate([g["input/data"], g["input/data"][:1]])
    target = np.concatenate([g["input/target"], g["input/target"][:1]])
    net.blobs["data"].reshape(4, 4)
    net.blobs["target"].reshape(4, 3)
    net.forward(data=data, target=target)
    assert net.layers[list(net._layer_names).index("scale")] is layer
    assert net.blobs["scaled"].shape == (4, 3)
    assert_close(net.blobs["scaled"].data[:3], g["data/scaled"], "scaled after reshape")
    assert_close(net.blobs["scaled"].data[3], g["data/scaled"][0], "the repeated row")


def test_weights_round_trip_through_a_caffemodel(tmp_path: Path) -> None:
    net, _, g = make_net("affine_two_tops_train", tmp_path)
    net.save(str(tmp_path / "w.caffemodel"))
    other = caffe.Net(str(tmp_path / "affine_two_tops_train.prototxt"), caffe.TRAIN,
                      weights=str(tmp_path / "w.caffemodel"))
    assert_close(other.params["affine"][0].data, g["param/affine/0"], "loaded weight")
    other.forward(**{k[len("input/"):]: v for k, v in g.items() if k.startswith("input/")})
    assert_close(other.blobs["mean"].data, g["data/mean"], "mean after loading")


def test_compile_refuses_python_layers_without_importing(tmp_path: Path) -> None:
    meta, _ = load("scale_then_pyloss")
    proto = tmp_path / "net.prototxt"
    proto.write_text(meta["prototxt"])
    with pytest.raises(errors.UnsupportedFieldError,
                       match=r"Python layers 'scale' \(python_param.module = 'pyscale'\), "
                             r"'loss' \(python_param.module = 'pyloss'\) run user code.*"
                             r"trust_python_layers=True.*caffe_fx\.pycaffe\.Net"):
        caffe_fx.compile(str(proto))
    assert "pyscale" not in sys.modules and "pyloss" not in sys.modules


@pytest.mark.parametrize("case", CASES)
def test_compile_runs_trusted_python_layers(case: str, tmp_path: Path) -> None:
    meta, g = load(case)
    proto = tmp_path / "net.prototxt"
    proto.write_text(meta["prototxt"])
    params: dict[str, list[np.ndarray]] = {}
    for key in sorted(k for k in g if k.startswith("param/")):
        _, layer, i = key.split("/")
        params.setdefault(layer, []).insert(int(i), g[key])
    blobs = [b for b in meta["blobs"] if b not in meta["inputs"]]
    gm = caffe_fx.compile(str(proto), params, phase=meta["phase"], outputs=blobs,
                          trust_python_layers=True)
    out = gm(**{k[len("input/"):]: torch.from_numpy(v) for k, v in g.items()
                if k.startswith("input/")})
    for name in blobs:
        assert_close(out[name].detach().numpy(), g[f"data/{name}"], f"data of {name}")


def test_missing_module_names_the_layer(tmp_path: Path) -> None:
    proto = tmp_path / "net.prototxt"
    proto.write_text('layer { name: "data" type: "Input" top: "data" '
                     'input_param { shape { dim: 2 dim: 3 } } }\n'
                     'layer { name: "py" type: "Python" bottom: "data" top: "out" '
                     'python_param { module: "no_such_pylayer_module" layer: "X" } }\n')
    with pytest.raises(errors.NetDefinitionError,
                       match=r"layer 'py' \(Python\): python_param.module = "
                             r"'no_such_pylayer_module' cannot be imported"):
        caffe.Net(str(proto), caffe.TEST)
    proto.write_text(proto.read_text().replace("no_such_pylayer_module", "pyscale"))
    with pytest.raises(errors.NetDefinitionError,
                       match=r"python_param.layer = 'X' is not defined in module 'pyscale'"):
        caffe.Net(str(proto), caffe.TEST)


def test_every_missing_module_is_named_in_one_error(tmp_path: Path) -> None:
    # faster R-CNN's train net needs three of its authors' modules: all are named at once.
    proto = tmp_path / "net.prototxt"
    proto.write_text('layer { name: "data" type: "Input" top: "data" '
                     'input_param { shape { dim: 2 dim: 3 } } }\n'
                     'layer { name: "a" type: "Python" bottom: "data" top: "x" '
                     'python_param { module: "no_such_module_a" layer: "X" } }\n'
                     'layer { name: "b" type: "Python" bottom: "x" top: "y" '
                     'python_param { module: "no_such_module_b" layer: "Y" } }\n')
    with pytest.raises(errors.NetDefinitionError,
                       match=r"layer 'a' .*'no_such_module_a' cannot be imported.*"
                             r"layer 'b' .*'no_such_module_b' cannot be imported"):
        caffe_fx.compile(str(proto), trust_python_layers=True)


def test_a_layer_without_tops_runs_at_every_forward(tmp_path: Path) -> None:
    # Net::ForwardFromTo runs every layer; nothing reads this one's tops (it has none).
    proto = tmp_path / "record.prototxt"
    proto.write_text(
        'layer { name: "data" type: "Input" top: "data" '
        'input_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "rec" type: "Python" bottom: "data" '
        'python_param { module: "pyscale" layer: "RecordLayer" } }\n'
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n')
    net = caffe.Net(str(proto), caffe.TEST)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    net.forward(data=x)
    net.forward(start="rec", end="rec")
    assert net.layer_dict["rec"].seen == [float(x.sum()), float(x.sum())]
    assert net.outputs == ["r"]
