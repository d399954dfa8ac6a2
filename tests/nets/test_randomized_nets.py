"""Published nets without weights here, against real Caffe run live, forward and backward.

The oracle fills every learnable blob with `--randomize 7`, saves them as a binary
.caffemodel and runs Net.forward then Net.backward (from seeded diffs on the outputs;
`force_backward`, so diffs reach every layer and input).  caffe_fx.compile() loads that
caffemodel and must give every blob; caffe_fx.pycaffe.Net must give every blob, every
diff, every param and every param diff (one oracle run serves both checks).

The Caffe forks' nets (catalog.FORK_RANDOMIZED: DenseNet-121, SE-ResNet-50, SegNet,
MobileNet-SSD) run on their fork's oracle, or on BVLC's with the fork's field or layer
rewritten into what it is defined as (catalog.ORACLE_EDITS: DenseNet's `ceil_mode: false`
as `round_mode: FLOOR`, SENet's Axpy as Flatten + Scale + Eltwise SUM); caffe_fx compiles
the published prototxt unchanged with the oracle's randomized weights: the outputs of its
whole forward and every blob as each layer computes it from Caffe's bottoms, then
(nets Caffe can differentiate: not DetectionOutput) every input, param and blob diff of
the GraphModule's autograd.  Whole ImageNet-sized nets: the long run only (`published`).
"""
from __future__ import annotations

import pytest

import numpy as np

import caffe_fx
from tests.nets.catalog import FORK_RANDOMIZED, RANDOMIZED, PublishedNet, params
from tests.nets.compare import (
    assert_blobs_match,
    assert_facade_matches,
    assert_graph_matches,
    assert_layers_match,
    backward_text,
    check_supported,
    compile_net,
    facade_net,
    output_topdiffs,
    run,
)


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("net", params(RANDOMIZED))
def test_every_blob_and_diff_matches_caffe(net: PublishedNet, oracle, shared_models,
                                           tmp_path) -> None:
    check_supported(shared_models / net.prototxt)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(backward_text(net.oracle_prototxt(shared_models)))
    inputs = net.make_inputs()
    pycaffe_net = facade_net(prototxt, inputs)
    topdiffs = output_topdiffs(pycaffe_net, net.name)
    weights = tmp_path / "randomized.caffemodel"
    record, meta = oracle(prototxt, inputs, randomize=7, save_weights=weights,
                          workdir=tmp_path, backward=True, topdiffs=topdiffs)

    caffe = {b: record[f"data/{b}"] for b in meta["blobs"] if b not in meta["inputs"]}
    gm = compile_net(prototxt, weights, outputs=list(caffe),
                     input_shapes={k: v.shape for k, v in inputs.items()})
    assert_blobs_match(run(gm, inputs), caffe, f"{net.name} (compile)")
    del gm, caffe

    pycaffe_net.copy_from(str(weights))
    assert_facade_matches(pycaffe_net, inputs, topdiffs, record, meta, f"{net.name} (pycaffe)")
    del pycaffe_net
    assert_graph_matches(prototxt, weights, inputs, topdiffs, record, meta,
                         f"{net.name} (GraphModule autograd)")


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("net", params(FORK_RANDOMIZED))
def test_fork_net_every_blob_and_diff_matches_the_fork(net: PublishedNet, oracle, shared_models,
                                                       tmp_path, monkeypatch) -> None:
    published = shared_models / net.prototxt
    check_supported(published)
    if net.fork:
        monkeypatch.setenv("CAFFE_ORACLE_FORK", net.fork)
    else:
        monkeypatch.delenv("CAFFE_ORACLE_FORK", raising=False)
    text = net.oracle_prototxt(shared_models)
    backward = "DetectionOutput" not in text  # the fork has no backward for it
    prototxt = tmp_path / "oracle.prototxt"
    prototxt.write_text(backward_text(text) if backward else text)
    inputs = net.make_inputs()
    shapes = {k: v.shape for k, v in inputs.items()}
    plan = caffe_fx.compile(str(published), input_shapes=shapes).meta["caffe"]
    r = np.random.RandomState(7)
    topdiffs = {b: r.randn(*plan.blob_shapes[b]).astype(np.float32) for b in plan.outputs
                if b not in inputs} if backward else {}
    weights = tmp_path / "randomized.caffemodel"
    record, meta = oracle(prototxt, inputs, randomize=7, save_weights=weights,
                          workdir=tmp_path, backward=backward, topdiffs=topdiffs)

    # Blobs of the published net: not those an oracle edit added, nor the Splits of the
    # oracle's `input:` stand-ins for a data layer (named after the stand-in).
    def ours(b: str) -> bool:
        return "__oracle" not in b and not any(
            b.startswith(f"{i}_") and "_split_" in b for i in meta["inputs"])

    blobs = [b for b in meta["blobs"] if ours(b)]
    caffe = {b: record[f"data/{b}"] for b in blobs if b not in meta["inputs"]}
    gm = compile_net(published, weights, outputs=list(caffe), input_shapes=shapes)
    # The outputs from our own whole forward; every blob from Caffe's bottoms (SegNet's
    # pooling masks move where a window's two largest values round 1e-7 apart: the
    # CPU's kernels decide which, and what Upsample then places differs there alone;
    # a Zen 5 EPYC moved 0.013% of segnet_basic's prob values, by up to 5.2e-4).
    assert_blobs_match(run(gm, inputs), {b: caffe[b] for b in plan.outputs if b in caffe},
                       f"{net.name} (compile, outputs)",
                       fraction=1e-3 if net.fork == "segnet" else 0.0)
    assert_layers_match(gm, inputs, caffe, f"{net.name} (compile, layer by layer)")
    del gm
    if backward:
        kept = {k: v for k, v in record.items() if ours(k.split("/", 1)[1])}
        assert_graph_matches(published, weights, inputs, topdiffs, kept, dict(meta, blobs=blobs),
                             f"{net.name} (GraphModule autograd)")
