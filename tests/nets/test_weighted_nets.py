"""Published nets with their trained weights, against real Caffe's goldens.

tools/make_net_goldens.py ran each net of catalog.WEIGHTED through Caffe 1.0 (the SSD
fork's face detectors through the fork) and kept inputs and blobs in tests/golden/nets/;
the prototxts and weights come from ../shared.  The face detectors' outputs (the final
detections: DetectionOutput's rows, or RFB/slim-320's boxes and scores) on a real photo
(catalog.PHOTO, read from ../shared) equal the fork's too.
Forward and backward in caffe_fx.pycaffe are checked against the oracle run live (every
blob, diff, param and param diff would make large goldens).
"""
from __future__ import annotations

import hashlib
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
    if not inputs:  # a big input is made again from its seed
        inputs = net.make_inputs()
        assert _digest(inputs) == meta["input_sha256"], f"{net.name}: the seeded inputs changed"
    caffe = {b: rec[f"data/{b}"] for b in meta["stored_blobs"]}
    gm = compile_net(shared_models / net.prototxt, shared_models / net.weights,
                         outputs=list(caffe),
                         input_shapes={k: v.shape for k, v in inputs.items()})
    assert_blobs_match(run(gm, inputs), caffe, net.name)


def _digest(inputs: dict[str, np.ndarray]) -> str:
    # tools/make_net_goldens.py's input_digest
    h = hashlib.sha256()
    for k in sorted(inputs):
        h.update(k.encode() + np.ascontiguousarray(inputs[k], np.float32).tobytes())
    return h.hexdigest()


PHOTO_NETS = [n for n in WEIGHTED if n.photo]


@pytest.mark.parametrize("net", PHOTO_NETS, ids=[n.name for n in PHOTO_NETS])
def test_face_detections_on_a_photo_match_the_fork(net: PublishedNet, shared_models) -> None:
    with np.load(GOLDEN / f"{net.name}_photo.npz") as f:
        rec = {k: f[k] for k in f.files}
    meta = json.loads(str(rec["meta"]))
    inputs = net.photo_inputs(shared_models)
    assert _digest(inputs) == meta["input_sha256"], \
        f"{net.name}: the photo decodes to other pixels here than when the golden was made"
    caffe = {b: rec[f"data/{b}"] for b in meta["outputs"]}
    gm = compile_net(shared_models / net.prototxt, shared_models / net.weights,
                     input_shapes={k: v.shape for k, v in inputs.items()})
    ours = run(gm, inputs)
    assert_blobs_match(ours, caffe, f"{net.name} on the photo")
    if "detection_out" in caffe:  # the fork kept faces: rows [image, label, score, box]
        assert caffe["detection_out"][0, 0, :, 1].min() >= 1


def _fork_env(net: PublishedNet, monkeypatch: pytest.MonkeyPatch) -> None:
    if net.fork:
        monkeypatch.setenv("CAFFE_ORACLE_FORK", net.fork)
    else:
        monkeypatch.delenv("CAFFE_ORACLE_FORK", raising=False)


# The fork's face detectors run live only in the long run (the suite's time), and
# yufacedetectnet, which ends in DetectionOutput, not at all: the fork has no backward for
# it (NOT_IMPLEMENTED aborts under force_backward); its goldens check its forward.
_NO_BACKWARD = {"yufacedetectnet_v1", "yufacedetectnet_v2"}
LIVE = [pytest.param(n, id=n.name, marks=[pytest.mark.published] if n.fork else [])
        for n in WEIGHTED if n.name not in _NO_BACKWARD]


@pytest.mark.oracle
@pytest.mark.parametrize("net", LIVE)
def test_pycaffe_forward_and_backward_match_caffe(net: PublishedNet, oracle, shared_models,
                                                  tmp_path, monkeypatch) -> None:
    _fork_env(net, monkeypatch)
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
