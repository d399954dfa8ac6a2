"""Published nets without weights here, against real Caffe run live, forward and backward.

The oracle fills every learnable blob with `--randomize 7`, saves them as a binary
.caffemodel and runs Net.forward then Net.backward (from seeded diffs on the outputs;
`force_backward`, so diffs reach every layer and input).  caffe_fx.compile() loads that
caffemodel and must give every blob; caffe_fx.pycaffe.Net must give every blob, every
diff, every param and every param diff (one oracle run serves both checks).
"""
from __future__ import annotations

import pytest

from tests.nets.catalog import RANDOMIZED, PublishedNet, params
from tests.nets.compare import (
    assert_blobs_match,
    assert_facade_matches,
    assert_graph_matches,
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
