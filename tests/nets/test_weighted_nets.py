"""Published nets with their trained weights, against real Caffe's goldens.

tools/make_net_goldens.py ran each net of catalog.WEIGHTED through Caffe 1.0 and kept
inputs and blobs in tests/golden/nets/; the prototxts and weights come from ../shared.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.nets.catalog import GOLDEN, WEIGHTED, PublishedNet
from tests.nets.compare import assert_blobs_match, compile_net, run


@pytest.mark.parametrize("net", WEIGHTED, ids=[n.name for n in WEIGHTED])
def test_every_blob_matches_caffe(net: PublishedNet, shared_models) -> None:
    with np.load(GOLDEN / f"{net.name}.npz") as f:
        rec = {k: f[k] for k in f.files}
    meta = json.loads(str(rec["meta"]))
    inputs = {k[len("input/"):]: v for k, v in rec.items() if k.startswith("input/")}
    caffe = {b: rec[f"data/{b}"] for b in meta["stored_blobs"]}
    gm = compile_net(shared_models / net.prototxt, shared_models / net.weights,
                         outputs=list(caffe),
                         input_shapes={k: v.shape for k, v in inputs.items()})
    assert_blobs_match(run(gm, inputs), caffe, net.name)
