"""caffe_fx/ops/loss.py: the generated code of every loss/Accuracy golden net scripts
with TorchScript and gives the same values as the GraphModule."""
import json
import warnings

import numpy as np
import pytest
import torch

import caffe_fx
from tests.golden.harness import cases_for, ids

TYPES = ("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
         "ContrastiveLoss", "InfogainLoss", "MultinomialLogisticLoss", "Accuracy")
CASES = [p for t in TYPES for p in cases_for(t)]


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_scripted_matches_graph_module(path):
    with np.load(path) as f:
        rec = dict(f)
    blobs = [b for b in json.loads(str(rec["meta"]))["blobs"] if f"data/{b}" in rec]
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=blobs)
    inputs = {k[len("input/"):]: torch.from_numpy(v) for k, v in rec.items()
              if k.startswith("input/")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scripted = torch.jit.script(gm)
    ours, theirs = gm(**inputs), scripted(**inputs)
    for blob in blobs:
        torch.testing.assert_close(theirs[blob], ours[blob], rtol=0, atol=0)
