"""caffe_fx.pycaffe.Net.backward computes the diffs real pycaffe's Net.backward leaves.

Goldens: tools/make_backward_goldens.py ran each small net forward and backward through
BVLC Caffe 1.0 (src/caffe/net.cpp BackwardFromTo) and kept every blob diff and param diff.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import caffe_fx.pycaffe as caffe
from tests.pycaffe.golden_nets import load_golden, net_from_golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "backward"
CASES = sorted(p.stem for p in GOLDEN.glob("*.npz"))


def load(case: str) -> tuple[dict, dict[str, np.ndarray]]:
    return load_golden(GOLDEN / f"{case}.npz")


def make_net(case: str, tmp_path: Path) -> tuple[caffe.Net, dict, dict[str, np.ndarray]]:
    return net_from_golden(GOLDEN / f"{case}.npz", tmp_path)


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale + 1e-12, err_msg=what)


@pytest.mark.parametrize("case", CASES)
def test_every_diff_matches_caffe(case: str, tmp_path: Path) -> None:
    net, meta, g = make_net(case, tmp_path)
    net.backward()
    for name in meta["blobs"]:
        assert_close(net.blobs[name].data, g[f"data/{name}"], f"data of {name}")
        assert_close(net.blobs[name].diff, g[f"diff/{name}"], f"diff of {name}")
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            assert_close(blob.diff, g[f"pdiff/{layer}/{i}"], f"param diff {layer}/{i}")


def test_goldens_are_present() -> None:
    assert len(CASES) >= 10


def test_returns_input_diffs_and_requested_diffs(tmp_path: Path) -> None:
    net, _, g = make_net("force_backward_inputs", tmp_path)
    out = net.backward(diffs=["ip1"])
    assert set(out) == {"data", "target", "ip1"}
    assert_close(out["data"], g["diff/data"], "data")
    assert out["data"] is net.blobs["data"].diff


def test_param_diffs_accumulate_until_cleared(tmp_path: Path) -> None:
    net, _, g = make_net("conv_relu_pool_softmax", tmp_path)
    net.backward()
    net.backward()
    assert_close(net.params["conv1"][0].diff, 2 * g["pdiff/conv1/0"], "twice")
    assert_close(net.params["ip1"][1].diff, 2 * g["pdiff/ip1/1"], "twice")
    # bottom diffs are overwritten, not accumulated
    assert_close(net.blobs["pool1"].diff, g["diff/pool1"], "pool1 after two calls")
    net.clear_param_diffs()
    assert not any(b.diff.any() for blobs in net.params.values() for b in blobs)
    net.backward()
    assert_close(net.params["conv1"][0].diff, g["pdiff/conv1/0"], "after clearing")


def test_loss_weight_is_the_seed_and_kwargs_overwrite_it(tmp_path: Path) -> None:
    net, _, g = make_net("euclidean_weight2", tmp_path)
    assert float(net.blobs["loss"].diff) == 2.0
    net.blobs["loss"].diff[...] = 4.0  # what backward(**kwargs) does to a non-scalar output
    net.backward()
    assert_close(net.params["ip1"][0].diff, 2 * g["pdiff/ip1/0"], "weight 4 = twice weight 2")


def test_kwargs_must_name_all_outputs(tmp_path: Path) -> None:
    net, _, _ = make_net("split_two_losses", tmp_path)
    with pytest.raises(ValueError, match="do not match the net's outputs"):
        net.backward(loss_a=np.ones(1, np.float32))


def test_start_end_run_a_range(tmp_path: Path) -> None:
    net, _, g = make_net("dangling_and_frozen", tmp_path)
    out = net.backward(start="loss", end="ip1")
    assert set(out) == {"ip0_ip0_0_split_0"}
    assert_close(out["ip0_ip0_0_split_0"], g["diff/ip0_ip0_0_split_0"], "split top")
    assert not net.blobs["ip0"].diff.any()  # the Split layer was not in the range


def test_forward_backward_all_batches(tmp_path: Path) -> None:
    net, _, g = make_net("topdiff_inplace_chain", tmp_path)
    data, top = g["input/data"], g["topdiff/ip2"]
    outs, diffs = net.forward_backward_all(data=np.concatenate([data, data[:1]]),
                                           ip2=np.concatenate([top, top[:1]]))
    assert diffs["data"].shape == (3, 6)
    assert_close(diffs["data"][:2], g["diff/data"], "first batch")
    assert_close(diffs["data"][2], g["diff/data"][0], "second batch")
    assert_close(outs["ip2"][:2], g["data/ip2"], "outputs")
