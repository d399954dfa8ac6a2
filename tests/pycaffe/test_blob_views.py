"""caffe_fx.pycaffe's blobs are views of the net's tensors, not copies.

Blob.data/.diff are zero-copy NumPy views of tensors on the net's device; a parameter's
diff is its nn.Parameter's .grad, so param diffs accumulate in .grad until
clear_param_diffs(), as Caffe's do.  Values are compared with the oracle's goldens.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import caffe_fx.pycaffe as caffe
from tests.pycaffe.golden_nets import net_from_golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "backward"


def _module_param(net: caffe.Net, layer: str, i: int) -> torch.nn.Parameter:
    gm = net._gm
    sub = gm.get_submodule(gm.meta["caffe"].modules[layer])
    return getattr(sub, sub.caffe_blobs[i])


def test_param_data_is_the_parameter_and_diff_its_grad(tmp_path: Path) -> None:
    net, _, g = net_from_golden(GOLDEN / "conv_relu_pool_softmax.npz", tmp_path)
    weight = _module_param(net, "conv1", 0)
    assert np.shares_memory(net.params["conv1"][0].data, weight.detach().numpy())
    net.backward()
    assert weight.grad is not None
    assert np.shares_memory(net.params["conv1"][0].diff, weight.grad.numpy())
    np.testing.assert_allclose(weight.grad.numpy(), g["pdiff/conv1/0"], rtol=0,
                               atol=1e-5 * np.abs(g["pdiff/conv1/0"]).max())
    net.params["conv1"][0].data[...] = 0  # pycaffe code writing weights changes the module
    assert not weight.detach().any()


def test_activation_views_survive_forward(tmp_path: Path) -> None:
    net, _, g = net_from_golden(GOLDEN / "conv_relu_pool_softmax.npz", tmp_path)
    held = net.blobs["pool1"].data  # held across forwards, as pycaffe code does
    net.blobs["data"].data[...] = 0
    net.forward()
    assert held is net.blobs["pool1"].data
    net.blobs["data"].data[...] = g["input/data"]
    net.forward()
    np.testing.assert_allclose(held, g["data/pool1"], rtol=0,
                               atol=1e-5 * np.abs(g["data/pool1"]).max())


def test_forward_without_backward_builds_no_graph(tmp_path: Path) -> None:
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }\n')
    net = caffe.Net(str(proto), caffe.TEST)
    net.forward(data=np.ones((2, 4), np.float32))
    assert net._values and not any(v.requires_grad for v in net._values.values())


def test_param_grads_accumulate_in_grad_until_cleared(tmp_path: Path) -> None:
    net, _, g = net_from_golden(GOLDEN / "split_two_losses.npz", tmp_path)
    weight = _module_param(net, "ip1", 0)
    net.backward()
    net.backward()
    np.testing.assert_allclose(weight.grad.numpy(), 2 * g["pdiff/ip1/0"], rtol=0,
                               atol=2e-5 * np.abs(g["pdiff/ip1/0"]).max())
    net.clear_param_diffs()
    assert not weight.grad.any()
