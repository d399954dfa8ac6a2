"""caffe_fx.pycaffe in GPU mode (set_mode_gpu) gives real pycaffe's blobs and diffs.

Caffe::set_mode(GPU) in pycaffe moves every layer's work to the device; here the net's
GraphModule, its parameters and its blobs' tensors move to CUDA once, and `data`/`diff`
are host mirrors synced on access (as Caffe's SyncedMemory is).  Needs a CUDA device (skipped
without one); the expected numbers are the CPU oracle goldens of test_backward.py.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx.pycaffe as caffe
from tests.pycaffe.golden_nets import net_from_golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "backward"
CASES = sorted(p.stem for p in GOLDEN.glob("*.npz"))

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def gpu_mode() -> Iterator[None]:
    caffe.set_mode_gpu()
    caffe.set_device(0)
    yield
    caffe.set_mode_cpu()


@pytest.mark.parametrize("case", CASES)
def test_forward_and_backward_on_the_gpu_match_caffe(case: str, tmp_path: Path) -> None:
    net, meta, g = net_from_golden(GOLDEN / f"{case}.npz", tmp_path)
    net.backward()
    for name in meta["blobs"]:
        for kind, got in (("data", net.blobs[name].data), ("diff", net.blobs[name].diff)):
            want = g[f"{kind}/{name}"]
            scale = float(np.abs(want).max()) if want.size else 0.0
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale + 1e-12,
                                       err_msg=f"{kind} of {name}")
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            want = g[f"pdiff/{layer}/{i}"]
            np.testing.assert_allclose(blob.diff, want, rtol=0,
                                       atol=1e-5 * float(np.abs(want).max()) + 1e-12)


def test_the_graph_runs_on_the_device(tmp_path: Path) -> None:
    net, _, _ = net_from_golden(GOLDEN / "conv_relu_pool_softmax.npz", tmp_path)
    runner = net._runner()
    assert {p.device.type for p in runner.parameters()} == {"cuda"}
    assert net.blobs["conv1"].tensor.device.type == "cuda"
    weight = net.params["conv1"][0]
    weight.data[...] = 0  # the host is the head now; the next forward pushes it back
    net.forward()
    assert not runner.get_submodule("conv1").weight.detach().any()
    bias = net.params["conv1"][1].data
    np.testing.assert_allclose(net.blobs["conv1"].data,  # ReLU in place over the bias alone
                               np.broadcast_to(np.maximum(bias, 0)[None, :, None, None],
                                               net.blobs["conv1"].shape))
