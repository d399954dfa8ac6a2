"""caffe_fx.register_layer and compile(layers=...): user layers in compile() and the facade.

User layers are not Caffe's, so no oracle computes them: expected values are written here
in NumPy from each layer's definition; weights come from a caffemodel made with caffe_pb2
directly (not caffe_fx's writer), so the blob order of the binding is what is tested.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx import errors
from caffe_fx.layers import LayerOverrideWarning, LayerView, unregister_layer
from caffe_fx.proto import caffe_pb2

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 ' \
        'dim: 4 dim: 5 } } }\n'
RNG = np.random.default_rng(7)
X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)


@pytest.fixture(autouse=True)
def forget_user_layers() -> Iterator[None]:
    """Each test registers its own types; none outlives it."""
    from caffe_fx.lowering import registry

    before = dict(registry._USER)
    yield
    registry._USER.clear()
    registry._USER.update(before)


def net(tmp_path: Path, body: str, name: str = "net.prototxt") -> str:
    """`force_backward`: the facade's backward gives the input blob a diff, as Caffe's does
    only then."""
    path = tmp_path / name
    path.write_text("force_backward: true\n" + INPUT + body)
    return str(path)


def caffemodel(tmp_path: Path, layers: dict[str, list[np.ndarray]]) -> str:
    """A binary caffemodel written with caffe_pb2 itself (BlobShape dims)."""
    param = caffe_pb2.NetParameter()
    for name, blobs in layers.items():
        layer = param.layer.add(name=name)
        for array in blobs:
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.astype(np.float32).ravel().tolist())
    path = tmp_path / "w.caffemodel"
    path.write_bytes(param.SerializeToString())
    return str(path)


# --------------------------------------------------------------------------- kinds

class ChannelAffine(nn.Module):
    """top = bottom * weight[c] + bias[c]; weight made before bias: blobs 0 and 1."""

    def __init__(self, layer: LayerView) -> None:
        super().__init__()
        channels = layer.input_shapes[0][1]
        self.weight = nn.Parameter(torch.full((channels,), 2.0))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


AFFINE = 'layer { name: "aff" type: "ChannelAffine" bottom: "data" top: "aff" }\n'
W, B = np.array([0.5, -1.0, 3.0], np.float32), np.array([0.1, 0.2, -0.3], np.float32)


def test_module_class_in_compile_takes_caffemodel_blobs_in_parameter_order(tmp_path):
    caffe_fx.register_layer("ChannelAffine", ChannelAffine, params=())
    gm = caffe_fx.compile(net(tmp_path, AFFINE), caffemodel(tmp_path, {"aff": [W, B]}))
    x = torch.from_numpy(X).requires_grad_()
    out = gm(data=x)["aff"]
    want = X * W[None, :, None, None] + B[None, :, None, None]
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=0, atol=1e-6)
    assert sorted(gm.state_dict()) == ["aff.bias", "aff.weight"]
    np.testing.assert_array_equal(gm.aff.weight.detach().numpy(), W)
    seed = RNG.standard_normal(X.shape).astype(np.float32)
    out.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(x.grad.numpy(), seed * W[None, :, None, None], atol=1e-6)
    np.testing.assert_allclose(gm.aff.weight.grad.numpy(), (seed * X).sum(axis=(0, 2, 3)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gm.aff.bias.grad.numpy(), seed.sum(axis=(0, 2, 3)),
                               rtol=1e-5, atol=1e-5)


def test_module_without_weights_keeps_its_own_initial_values(tmp_path):
    caffe_fx.register_layer("ChannelAffine", ChannelAffine, params=())
    gm = caffe_fx.compile(net(tmp_path, AFFINE))
    out = gm(data=torch.from_numpy(X))["aff"].detach().numpy()
    np.testing.assert_array_equal(out, 2 * X)


def test_module_class_in_the_facade(tmp_path):
    caffe_fx.register_layer("ChannelAffine", ChannelAffine, params=())
    n = caffe.Net(net(tmp_path, AFFINE), caffe.TEST, weights=caffemodel(tmp_path,
                                                                       {"aff": [W, B]}))
    assert [b.data.tolist() for b in n.params["aff"]] == [W.tolist(), B.tolist()]
    n.blobs["data"].data[...] = X
    n.forward()
    want = X * W[None, :, None, None] + B[None, :, None, None]
    np.testing.assert_allclose(n.blobs["aff"].data, want, rtol=0, atol=1e-6)
    seed = RNG.standard_normal(X.shape).astype(np.float32)
    n.blobs["aff"].diff[...] = seed
    n.backward()
    np.testing.assert_allclose(n.blobs["data"].diff, seed * W[None, :, None, None], atol=1e-6)
    np.testing.assert_allclose(n.params["aff"][0].diff, (seed * X).sum(axis=(0, 2, 3)),
                               rtol=1e-5, atol=1e-5)


def test_caffe_blobs_name_the_blob_order(tmp_path):
    class Swapped(ChannelAffine):
        caffe_blobs = ("bias", "weight")

    caffe_fx.register_layer("ChannelAffine", Swapped, params=())
    gm = caffe_fx.compile(net(tmp_path, AFFINE), caffemodel(tmp_path, {"aff": [B, W]}))
    want = X * W[None, :, None, None] + B[None, :, None, None]
    np.testing.assert_allclose(gm(data=torch.from_numpy(X))["aff"].detach().numpy(), want,
                               atol=1e-6)


def signed_power(layer: LayerView, x: torch.Tensor) -> torch.Tensor:
    """sign(x) |x|^p, p = power_param.power (a user layer reading a BVLC message)."""
    return torch.sign(x) * x.abs() ** layer.param.power_param.power


POWER = ('layer { name: "sp" type: "SignedPower" bottom: "data" top: "sp" '
         'power_param { power: 3 } }\n')


def test_function_in_compile_and_facade_with_autograd_backward(tmp_path):
    caffe_fx.register_layer("SignedPower", signed_power, params=("power_param",), bottoms=1,
                            tops=1)
    gm = caffe_fx.compile(net(tmp_path, POWER))
    x = torch.from_numpy(X).requires_grad_()
    out = gm(data=x)["sp"]
    np.testing.assert_allclose(out.detach().numpy(), X ** 3, rtol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * X ** 2, rtol=1e-5)
    n = caffe.Net(net(tmp_path, POWER), caffe.TEST)
    n.forward(data=X)
    np.testing.assert_allclose(n.blobs["sp"].data, X ** 3, rtol=1e-6)
    n.blobs["sp"].diff[...] = 1.0
    n.backward()
    np.testing.assert_allclose(n.blobs["data"].diff, 3 * X ** 2, rtol=1e-5)


class ClampStraightThrough(torch.autograd.Function):
    """Forward clamps to [-1, 1]; backward passes the gradient unchanged (not autograd's
    derivative of clamp, which is 0 outside)."""

    @staticmethod
    def forward(ctx, layer: LayerView, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, grad


CLAMP = 'layer { name: "cl" type: "ClampST" bottom: "data" top: "cl" }\n'


def test_autograd_function_backward_is_its_own(tmp_path):
    caffe_fx.register_layer("ClampST", ClampStraightThrough, params=())
    gm = caffe_fx.compile(net(tmp_path, CLAMP))
    x = torch.from_numpy(X * 3).requires_grad_()
    out = gm(data=x)["cl"]
    np.testing.assert_array_equal(out.detach().numpy(), np.clip(X * 3, -1, 1))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones_like(X))
    n = caffe.Net(net(tmp_path, CLAMP), caffe.TEST)
    n.forward(data=X * 3)
    n.blobs["cl"].diff[...] = 2.0
    n.backward()
    np.testing.assert_array_equal(n.blobs["data"].diff, np.full_like(X, 2.0))


class HalveLayer(caffe.Layer):
    """A pycaffe layer registered as a type: top = bottom / 2; one learnable blob (unused
    by forward) to check the blob plumbing."""

    def setup(self, bottom, top):
        self.blobs.add_blob(3)
        self.blobs[0].data[...] = [1.0, 2.0, 3.0]

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data / 2

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff / 2


HALVE = 'layer { name: "h" type: "Halve" bottom: "data" top: "h" }\n'


def test_pycaffe_layer_class_needs_no_trust_once_registered(tmp_path):
    caffe_fx.register_layer("Halve", HalveLayer, params=())
    gm = caffe_fx.compile(net(tmp_path, HALVE), caffemodel(tmp_path, {"h": [W]}))
    x = torch.from_numpy(X).requires_grad_()
    out = gm(data=x)["h"]
    np.testing.assert_array_equal(out.detach().numpy(), X / 2)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full_like(X, 0.5))
    n = caffe.Net(net(tmp_path, HALVE), caffe.TEST, weights=caffemodel(tmp_path, {"h": [W]}))
    assert isinstance(n.layers[1], HalveLayer)
    np.testing.assert_array_equal(n.params["h"][0].data, W)
    n.forward(data=X)
    np.testing.assert_array_equal(n.blobs["h"].data, X / 2)


def test_decorator_form_and_several_tops(tmp_path):
    @caffe_fx.register_layer("SplitSign", params=(), tops=2)
    def split_sign(layer, x):
        return x.clamp(min=0), x.clamp(max=0)

    body = 'layer { name: "s" type: "SplitSign" bottom: "data" top: "pos" top: "neg" }\n'
    out = caffe_fx.compile(net(tmp_path, body))(data=torch.from_numpy(X))
    np.testing.assert_array_equal(out["pos"].numpy(), np.maximum(X, 0))
    np.testing.assert_array_equal(out["neg"].numpy(), np.minimum(X, 0))
    assert "SplitSign" in caffe_fx.supported_layers()


def test_a_loss_layer_gets_an_automatic_top_and_loss_weight_one(tmp_path):
    caffe_fx.register_layer("SquareSum", lambda layer, x: (x * x).sum() / 2, params=(),
                            bottoms=1, is_loss=True)
    body = 'layer { name: "loss" type: "SquareSum" bottom: "data" }\n'
    gm = caffe_fx.compile(net(tmp_path, body))
    (name,) = gm.meta["caffe"].outputs
    np.testing.assert_allclose(float(gm(data=torch.from_numpy(X))[name]),
                               float((X.astype(np.float64) ** 2).sum() / 2), rtol=1e-5)
    n = caffe.Net(net(tmp_path, body), caffe.TRAIN)
    n.forward(data=X)
    n.backward()  # the loss top's diff is its loss weight, 1, as Layer::SetLossWeights sets
    np.testing.assert_allclose(n.blobs["data"].diff, X, rtol=1e-6)


# --------------------------------------------------------------------------- overriding

def test_overriding_a_builtin_warns_and_unregister_brings_it_back(tmp_path):
    body = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
    with pytest.warns(LayerOverrideWarning, match=r"layer type 'ReLU' is built into caffe_fx"):
        caffe_fx.register_layer("ReLU", lambda layer, x: x.abs())
    out = caffe_fx.compile(net(tmp_path, body))(data=torch.from_numpy(X))["r"]
    np.testing.assert_array_equal(out.numpy(), np.abs(X))
    unregister_layer("ReLU")
    out = caffe_fx.compile(net(tmp_path, body))(data=torch.from_numpy(X))["r"]
    np.testing.assert_array_equal(out.numpy(), np.maximum(X, 0))


def test_a_new_type_registers_without_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caffe_fx.register_layer("SignedPower", signed_power)


# --------------------------------------------------------------------------- layers=

def test_layers_mapping_has_caffemodel2pytorchs_shape(tmp_path):
    """modules=dict(Type=lambda param: ...): param is the layer's *_param as a dict."""
    seen: list[dict] = []

    def make(param):
        seen.append(param)
        return nn.Linear(5, param["num_output"])

    body = ('layer { name: "fc" type: "MyFC" bottom: "data" top: "fc" '
            'inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }\n')
    w = RNG.standard_normal((2, 5)).astype(np.float32)
    b = np.array([1.0, -1.0], np.float32)
    gm = caffe_fx.compile(net(tmp_path, body), caffemodel(tmp_path, {"fc": [w, b]}),
                          layers={"MyFC": make})
    assert seen[0] == {"num_output": 2, "weight_filler": {"type": "xavier"}, "inplace": False}
    out = gm(data=torch.from_numpy(X))["fc"].detach().numpy()
    np.testing.assert_allclose(out, X @ w.T + b, rtol=1e-5, atol=1e-5)
    assert "MyFC" not in caffe_fx.supported_layers()  # for that call only


def test_layers_mapping_overrides_with_a_warning_and_takes_functions(tmp_path):
    body = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
    with pytest.warns(LayerOverrideWarning, match=r"'ReLU' is built into caffe_fx"):
        gm = caffe_fx.compile(net(tmp_path, body), layers={"ReLU": lambda param: torch.tanh})
    np.testing.assert_allclose(gm(data=torch.from_numpy(X))["r"].numpy(), np.tanh(X),
                               rtol=1e-6)


def test_layers_mapping_matches_python_layers_by_class_without_importing(tmp_path):
    body = ('layer { name: "py" type: "Python" bottom: "data" top: "py" python_param { '
            'module: "never_imported_mod" layer: "DoubleLayer" param_str: "2" } }\n')
    params: list[dict] = []

    def make(param):
        params.append(param)
        return lambda x: x * float(param["param_str"])

    gm = caffe_fx.compile(net(tmp_path, body), layers={"DoubleLayer": make})
    np.testing.assert_allclose(gm(data=torch.from_numpy(X))["py"].numpy(), 2 * X)
    assert params[0]["module"] == "never_imported_mod"
    assert "never_imported_mod" not in sys.modules
    n = caffe.Net(net(tmp_path, body), caffe.TEST, layers={"DoubleLayer": make})
    n.forward(data=X)
    np.testing.assert_allclose(n.blobs["py"].data, 2 * X)


def test_layers_mapping_can_return_a_pycaffe_layer_object(tmp_path):
    gm = caffe_fx.compile(net(tmp_path, HALVE), layers={"Halve": lambda param: HalveLayer()})
    np.testing.assert_array_equal(gm(data=torch.from_numpy(X))["h"].numpy(), X / 2)


# --------------------------------------------------------------------------- errors

def test_not_a_layer_is_refused_naming_what_is_allowed():
    with pytest.raises(errors.InputError, match=r"register_layer\('Foo', \.\.\.\): 3 is not a "
                                                r"layer; allowed: a torch.nn.Module subclass"):
        caffe_fx.register_layer("Foo", 3)


def test_unknown_params_field_is_refused():
    with pytest.raises(errors.InputError, match=r"params = \['bogus_param'\] are not "
                                                r"LayerParameter fields"):
        caffe_fx.register_layer("Normalize", signed_power, params=("bogus_param",))


def test_fields_the_layer_does_not_read_are_said(tmp_path):
    caffe_fx.register_layer("SignedPower", signed_power, params=())
    with pytest.warns(errors.IgnoredFieldWarning,
                      match=r"layer 'sp' \(SignedPower\): power_param \(it reads: none\)"):
        caffe_fx.compile(net(tmp_path, POWER))


def test_wrong_number_of_outputs_names_the_layer(tmp_path):
    caffe_fx.register_layer("TwoOut", lambda layer, x: (x, x), params=())
    body = 'layer { name: "t" type: "TwoOut" bottom: "data" top: "t" }\n'
    with pytest.raises(errors.NetDefinitionError,
                       match=r"layer 't': the user layer returned tuple of 2; allowed: one "
                             r"tensor per top \(1\)"):
        caffe_fx.compile(net(tmp_path, body))


def test_unregistering_an_unknown_type_is_an_error():
    with pytest.raises(errors.InputError, match=r"no user layer of type 'Nope'"):
        unregister_layer("Nope")


# --------------------------------------------------------------------------- torch tooling

def _three_kinds(tmp_path: Path):
    caffe_fx.register_layer("ChannelAffine", ChannelAffine, params=())
    caffe_fx.register_layer("ClampST", ClampStraightThrough, params=())
    caffe_fx.register_layer("SignedPower", signed_power, params=("power_param",))
    body = AFFINE + ('layer { name: "cl" type: "ClampST" bottom: "aff" top: "cl" }\n'
                     'layer { name: "sp" type: "SignedPower" bottom: "cl" top: "sp" '
                     'power_param { power: 3 } }\n')
    return caffe_fx.compile(net(tmp_path, body), caffemodel(tmp_path, {"aff": [W, B]}))


def test_user_layers_export(tmp_path):
    gm = _three_kinds(tmp_path)
    x = torch.from_numpy(X)
    want = np.clip(X * W[None, :, None, None] + B[None, :, None, None], -1, 1) ** 3
    exported = torch.export.export(gm, (), {"data": x})
    np.testing.assert_allclose(exported.module()(data=x)["sp"].detach().numpy(), want,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_user_layers_torch_compile(tmp_path):
    gm = _three_kinds(tmp_path)
    x = torch.from_numpy(X)
    want = np.clip(X * W[None, :, None, None] + B[None, :, None, None], -1, 1) ** 3
    np.testing.assert_allclose(torch.compile(gm)(data=x)["sp"].detach().numpy(), want,
                               rtol=1e-5, atol=1e-6)


class _SavesTop(torch.autograd.Function):
    """exp, whose backward reads its own output."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class SavesTop(nn.Module):
    def __init__(self, layer):
        super().__init__()

    def forward(self, x):
        return _SavesTop.apply(x)


def test_a_relu_after_a_user_module_does_not_overwrite_what_its_backward_saved(tmp_path):
    caffe_fx.register_layer("SavesTop", SavesTop)
    body = ('layer { name: "e" type: "SavesTop" bottom: "data" top: "e" }\n'
            'layer { name: "r" type: "ReLU" bottom: "e" top: "e" }\n')
    gm = caffe_fx.compile(net(tmp_path, body))
    assert "relu_" not in gm.code
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    gm(data=x)["e"].sum().backward()
    torch.testing.assert_close(x.grad, x.detach().exp())
