"""Published nets without weights here, against real Caffe run live.

The oracle fills every learnable blob with `--randomize 7` and saves them as a binary
.caffemodel, which caffe_fx then loads (so binary weight loading is exercised too);
every blob of the forward pass is compared.
"""
from __future__ import annotations

import pytest

from tests.nets.catalog import RANDOMIZED, PublishedNet
from tests.nets.compare import assert_blobs_match, compile_net, run, check_supported


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("net", RANDOMIZED, ids=[n.name for n in RANDOMIZED])
def test_every_blob_matches_caffe(net: PublishedNet, oracle, shared_models, tmp_path) -> None:
    prototxt = shared_models / net.prototxt
    check_supported(prototxt)
    inputs = net.make_inputs()
    weights = tmp_path / "randomized.caffemodel"
    data, meta = oracle(prototxt, inputs, randomize=7, save_weights=weights, workdir=tmp_path)
    caffe = {b: data[f"data/{b}"] for b in meta["blobs"] if b not in meta["inputs"]}
    gm = compile_net(prototxt, weights, outputs=list(caffe),
                         input_shapes={k: v.shape for k, v in inputs.items()})
    assert_blobs_match(run(gm, inputs), caffe, net.name)
