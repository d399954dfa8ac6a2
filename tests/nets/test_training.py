"""A training step through torch.compile gives eager's gradients, which are Caffe's.

LeNet as BVLC trains it (examples/mnist/lenet_train_test.prototxt in ../shared/models,
TRAIN phase, its Data layer's tops as inputs) and a small net of the layers whose
backward is Caffe's own formula rather than torch's derivative (Eltwise MAX with ties,
MVN with eps, in-place Clip and negative-slope ReLU, SoftmaxWithLoss); the layers'
gradients themselves are checked against real Caffe in tests/layers/test_backward_graph.py.
The small net also still scripts, exports and converts to ONNX with those ops.
"""
from __future__ import annotations

import pytest
import torch
from torch import fx

import caffe_fx
from caffe_fx.ops import eltwise, loss, misc, neuron

LENET = "BVLC+caffe/examples/mnist/lenet_train_test.prototxt"

SMALL = """
name: "small"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 12 } shape { dim: 4 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "clip" type: "Clip" bottom: "ip1" top: "ip1" clip_param { min: -0.5 max: 0.5 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "r1" }
layer { name: "ip2" type: "InnerProduct" bottom: "data" top: "ip2"
  inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "relu2" type: "ReLU" bottom: "ip2" top: "r2" }
layer { name: "max" type: "Eltwise" bottom: "r1" bottom: "r2" top: "max"
  eltwise_param { operation: MAX } }
layer { name: "square" type: "Reshape" bottom: "max" top: "sq"
  reshape_param { shape { dim: 0 dim: 2 dim: 2 dim: 2 } } }
layer { name: "mvn" type: "MVN" bottom: "sq" top: "mvn" mvn_param { eps: 0.1 } }
layer { name: "ip3" type: "InnerProduct" bottom: "mvn" top: "ip3"
  inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "leaky" type: "ReLU" bottom: "ip3" top: "ip3" relu_param { negative_slope: -0.5 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip3" bottom: "label" top: "loss" }
"""


def _grads(gm: fx.GraphModule, run, inputs: dict[str, torch.Tensor], differentiate: str
           ) -> dict[str, torch.Tensor]:
    """loss.backward() through `run` (gm or its compiled form): the .grad of every
    parameter and of the input `differentiate`."""
    gm.zero_grad(set_to_none=True)
    feeds = dict(inputs)
    feeds[differentiate] = inputs[differentiate].clone().requires_grad_(True)
    run(**feeds)["loss"].backward()
    grads = {name: p.grad.clone() for name, p in gm.named_parameters()}
    grads[differentiate] = feeds[differentiate].grad
    return grads


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], msg=lambda m, k=k: f"grad of {k}: {m}")


@pytest.fixture(scope="module")
def small() -> tuple[fx.GraphModule, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    gm = caffe_fx.compile(SMALL)
    g = torch.Generator().manual_seed(1)
    return gm, {"data": torch.randn(4, 12, generator=g),
                "label": torch.tensor([1.0, 3.0, 0.0, 4.0])}


@pytest.fixture(scope="module")
def lenet(shared_models) -> tuple[fx.GraphModule, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    gm = caffe_fx.compile(str(shared_models / LENET), phase="train",
                          input_shapes={"data": (4, 1, 28, 28), "label": (4,)})
    g = torch.Generator().manual_seed(2)
    return gm, {"data": torch.rand(4, 1, 28, 28, generator=g),
                "label": torch.tensor([1.0, 3.0, 3.0, 9.0])}


def test_small_net_uses_caffes_backward(small, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the Caffe formulas (torch's derivative of every forward) the gradients
    differ: the net exercises them."""
    gm, inputs = small
    caffe = _grads(gm, gm, inputs, "data")
    for module in (eltwise, loss, misc, neuron):
        monkeypatch.setattr(module, "caffe_grad", lambda *xs: False)
    torch_derivative = _grads(gm, gm, inputs, "data")
    assert not torch.allclose(caffe["data"], torch_derivative["data"])


@pytest.mark.parametrize("net", ["small", "lenet"])
def test_compiled_training_step_gives_eagers_gradients(net: str, request) -> None:
    gm, inputs = request.getfixturevalue(net)
    eager = _grads(gm, gm, inputs, "data")
    compiled = torch.compile(gm, backend="aot_eager", fullgraph=True)
    _assert_same(_grads(gm, compiled, inputs, "data"), eager)


@pytest.mark.slow
def test_inductor_training_step_gives_eagers_gradients(small) -> None:
    gm, inputs = small
    eager = _grads(gm, gm, inputs, "data")
    compiled = torch.compile(gm, backend="inductor", fullgraph=True)
    _assert_same(_grads(gm, compiled, inputs, "data"), eager)


def _outputs(run, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return run(**inputs)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_small_net_scripts(small) -> None:
    gm, inputs = small
    scripted = torch.jit.script(gm)
    torch.testing.assert_close(_outputs(scripted, inputs), _outputs(gm, inputs))


def test_small_net_exports(small) -> None:
    gm, inputs = small
    program = torch.export.export(gm, (), inputs)  # params require grad: the plain ops
    torch.testing.assert_close(_outputs(program.module(), inputs), _outputs(gm, inputs))


def test_small_net_to_onnx(small, tmp_path) -> None:
    pytest.importorskip("onnxscript")
    from onnx.reference import ReferenceEvaluator

    gm, inputs = small
    path = tmp_path / "small.onnx"
    torch.onnx.export(gm, (), str(path), kwargs=inputs, dynamo=True)
    (got,) = ReferenceEvaluator(str(path)).run(None, {k: v.numpy() for k, v in inputs.items()})
    torch.testing.assert_close(torch.from_numpy(got), _outputs(gm, inputs)["loss"],
                               rtol=1e-5, atol=1e-6)
