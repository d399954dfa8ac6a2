"""Export paths of compiled published nets: TorchScript, torch.export, ONNX, torch.compile.

LeNet (its trained weights) and GoogLeNet (Caffe's fillers: only self-consistency matters
here) must give the eager GraphModule's outputs through each path.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import fx

from tests.nets.catalog import GOLDEN, by_name
from tests.nets.compare import compile_net, check_supported

NETS = ["lenet", "googlenet"]


@pytest.fixture(scope="module", params=NETS)
def compiled(request, shared_models) -> tuple[str, fx.GraphModule, dict[str, torch.Tensor]]:
    net = by_name(request.param)
    prototxt = shared_models / net.prototxt
    check_supported(prototxt)
    if net.weights is not None:
        with np.load(GOLDEN / f"{net.name}.npz") as f:
            meta = json.loads(str(f["meta"]))
            inputs = {k[len("input/"):]: torch.from_numpy(f[k]) for k in f.files
                      if k.startswith("input/")}
        torch.manual_seed(0)
        gm = compile_net(prototxt, shared_models / net.weights, outputs=meta["outputs"])
    else:
        torch.manual_seed(0)
        gm = compile_net(prototxt, None)
        inputs = {k: torch.from_numpy(v) for k, v in net.make_inputs().items()}
    return net.name, gm, inputs


def eager(gm: fx.GraphModule, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return gm(**inputs)


def assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], msg=lambda m, k=k: f"output '{k}': {m}")


def test_torchscript(compiled) -> None:
    _, gm, inputs = compiled
    scripted = torch.jit.script(gm)
    with torch.no_grad():
        assert_same(scripted(**inputs), eager(gm, inputs))


def test_torch_export(compiled) -> None:
    _, gm, inputs = compiled
    ep = torch.export.export(gm, (), inputs)
    with torch.no_grad():
        assert_same(ep.module()(**inputs), eager(gm, inputs))


def test_torch_compile(compiled) -> None:
    _, gm, inputs = compiled
    fast = torch.compile(gm, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        assert_same(fast(**inputs), eager(gm, inputs))


def test_onnx(compiled, tmp_path) -> None:
    name, gm, inputs = compiled
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(gm, (), str(path), kwargs=inputs, dynamo=True)
    if name != "lenet":  # the reference evaluator is too slow for big nets
        return
    from onnx.reference import ReferenceEvaluator
    evaluator = ReferenceEvaluator(str(path))
    got = evaluator.run(None, {k: v.numpy() for k, v in inputs.items()})
    want = eager(gm, inputs)
    assert len(got) == len(want)
    for value, (k, expected) in zip(got, want.items()):
        np.testing.assert_allclose(value, expected.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)
