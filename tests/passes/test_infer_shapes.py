"""Shape inference and net structure against real Caffe, over every golden case.

For each net Caffe ran (tests/golden/layers), the shapes caffe_fx infers for every blob
at compile time, the net's inputs, and its outputs (in Caffe's order: sorted by name)
must equal what pycaffe reported in the oracle's meta."""
import json

import numpy as np
import pytest

import caffe_fx
from tests.golden.harness import LAYERS

ALL = sorted(LAYERS.glob("*.npz"))


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_structure_matches_caffe(path):
    with np.load(path) as rec:
        meta = json.loads(str(rec["meta"]))
        prototxt, phase = str(rec["prototxt"]), str(rec["phase"])
        layer = str(rec["layer"])
    gm = caffe_fx.compile(prototxt, phase=phase)
    info = gm.meta["caffe"]
    assert info.inputs == meta["inputs"]
    if meta["outputs"]:
        assert info.outputs == meta["outputs"]
    else:  # Caffe's net has no outputs: the GraphModule returns what Silence swallows
        silenced = [b for lay in meta["layers"] if lay["type"] == "Silence"
                    for b in lay["bottoms"]]
        assert info.outputs == list(dict.fromkeys(silenced)) and silenced
    caffe_shapes = {b: tuple(s) for b, s in meta["blobs"].items()}
    ours = dict(info.blob_shapes)
    if layer == "Filter":
        # Filter's top size depends on the selector's values: known only after forward
        # (the oracle records post-forward shapes); compile time sizes it with the full batch.
        for blob in meta["layers"][-1]["tops"]:
            assert ours.pop(blob)[1:] == caffe_shapes.pop(blob)[1:]
    assert ours == caffe_shapes


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_node_meta_shape_is_caffes(path):
    """Every node holding a blob carries that blob's shape in node.meta["shape"] (all
    versions of a Caffe blob, in-place ones too, have the blob's one shape)."""
    with np.load(path) as rec:
        meta = json.loads(str(rec["meta"]))
        prototxt, phase = str(rec["prototxt"]), str(rec["phase"])
        layer = str(rec["layer"])
    gm = caffe_fx.compile(prototxt, phase=phase)
    caffe_shapes = {b: tuple(s) for b, s in meta["blobs"].items()}
    if layer == "Filter":  # sized after forward in Caffe; see test_structure_matches_caffe
        caffe_shapes = {b: s for b, s in caffe_shapes.items()
                        if b not in meta["layers"][-1]["tops"]}
    blob_nodes = [n for n in gm.graph.nodes if n.meta.get("caffe_blob") in caffe_shapes]
    assert blob_nodes
    for node in blob_nodes:
        assert node.meta["shape"] == caffe_shapes[node.meta["caffe_blob"]], node.name
