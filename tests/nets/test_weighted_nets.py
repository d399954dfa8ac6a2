"""Published nets with their trained weights, against real Caffe's goldens.

tools/make_net_goldens.py ran each net of catalog.WEIGHTED through Caffe 1.0 and kept
inputs and blobs in tests/golden/nets/; the prototxts and weights come from ../shared.
Forward and backward in caffe_fx.pycaffe are checked against the oracle run live (every
blob, diff, param and param diff would make large goldens).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.nets.catalog import GOLDEN, WEIGHTED, PublishedNet
from tests.nets.compare import (
    assert_blobs_match,
    assert_facade_matches,
    assert_graph_matches,
    backward_text,
    compile_net,
    facade_net,
    output_topdiffs,
    run,
)


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


@pytest.mark.oracle
@pytest.mark.parametrize("net", WEIGHTED, ids=[n.name for n in WEIGHTED])
def test_pycaffe_forward_and_backward_match_caffe(net: PublishedNet, oracle, shared_models,
                                                  tmp_path) -> None:
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(backward_text(net.oracle_prototxt(shared_models)))
    weights = shared_models / net.weights
    inputs = net.make_inputs()
    pycaffe_net = facade_net(prototxt, inputs, weights)
    topdiffs = output_topdiffs(pycaffe_net, net.name)
    record, meta = oracle(prototxt, inputs, weights=weights, workdir=tmp_path, backward=True,
                          topdiffs=topdiffs)
    assert_facade_matches(pycaffe_net, inputs, topdiffs, record, meta, net.name)
    assert_graph_matches(prototxt, weights, inputs, topdiffs, record, meta,
                         f"{net.name} (GraphModule autograd)")
