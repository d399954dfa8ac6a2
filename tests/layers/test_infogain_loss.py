"""InfogainLoss against real Caffe (H as a third bottom): axis, ignore_label,
normalization, the 1e-20 log threshold, the probability top; H from a binaryproto."""
import warnings

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import NetDefinitionError, UnsupportedFieldError
from caffe_fx.proto import caffe_pb2

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("InfogainLoss")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_infogain_loss_matches_caffe(path):
    assert_matches(path)


def _net(layer_body: str, tops: str = 'top: "loss"') -> str:
    return ('layer { name: "input" type: "Input" top: "data" top: "label"\n'
            '  input_param { shape { dim: 4 dim: 5 } shape { dim: 4 } } }\n'
            'layer { name: "loss" type: "InfogainLoss" bottom: "data" bottom: "label" %s\n'
            '  %s }\n' % (tops, layer_body))


@pytest.mark.parametrize("legacy", [False, True], ids=["shape", "legacy_4d"])
def test_source_binaryproto(tmp_path, legacy):
    with np.load("tests/golden/layers/infogainloss-basic.npz") as f:
        rec = {k: f[k] for k in f}
    h = rec["input/infogain"]
    blob = caffe_pb2.BlobProto()
    if legacy:
        blob.num, blob.channels, blob.height, blob.width = h.shape
    else:
        blob.shape.dim.extend(h.shape[2:])
    blob.data.extend(h.ravel().tolist())
    path = tmp_path / "H.binaryproto"
    path.write_bytes(blob.SerializeToString())
    gm = caffe_fx.compile(_net(f'infogain_loss_param {{ source: "{path}" }} '
                               'loss_weight: 1 loss_weight: 0', 'top: "loss" top: "prob"'))
    assert list(gm.state_dict()) == []  # H is not a Caffe param blob
    data, label = torch.from_numpy(rec["input/data"]), torch.from_numpy(rec["input/label"])
    out = gm(data, label)
    np.testing.assert_allclose(out["loss"].numpy(), rec["data/loss"], rtol=1e-6)
    torch.testing.assert_close(out["prob"], torch.softmax(data, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scripted = torch.jit.script(gm)(data, label)
    torch.testing.assert_close(scripted["loss"], out["loss"], rtol=0, atol=0)


def test_needs_h():
    with pytest.raises(NetDefinitionError, match="no infogain_loss_param.source"):
        caffe_fx.compile(_net(""))


def test_rejects_legacy_normalize():
    with pytest.raises(UnsupportedFieldError, match="loss_param.normalize = True"):
        caffe_fx.compile(_net('loss_param { normalize: true } infogain_loss_param '
                              '{ source: "x" }'))
