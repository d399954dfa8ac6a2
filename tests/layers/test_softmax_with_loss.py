"""SoftmaxWithLoss against real Caffe: axis, ignore_label, every normalization, FLT_MIN;
plus the anonymous top, the probability top and loss_weight counts."""
import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import InputError, NetDefinitionError, ShapeError

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("SoftmaxWithLoss")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_softmax_with_loss_matches_caffe(path):
    assert_matches(path)


_INPUT = ('layer { name: "input" type: "Input" top: "data" top: "label"\n'
          '  input_param { shape { dim: 4 dim: 5 } shape { dim: 4 } } }\n')


def _golden(name):
    with np.load(f"tests/golden/layers/{name}.npz") as f:
        return {k: f[k] for k in f}


def test_auto_top_net_compiles():
    # Caffe gives the loss an anonymous "(automatic)" top (loss weight 1) that is not among
    # net.outputs; compile() returns it under that name, so that a loop can backward it.
    net = _INPUT + ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
                    '  inner_product_param { num_output: 5 } }\n'
                    'layer { name: "loss" type: "SoftmaxWithLoss"\n'
                    '  bottom: "ip" bottom: "label" }\n'
                    'layer { name: "acc" type: "Accuracy"\n'
                    '  bottom: "ip" bottom: "label" top: "acc" }\n')
    gm = caffe_fx.compile(net)
    assert gm.meta["caffe"].outputs == ["(automatic)", "acc"]
    logits = torch.randn(4, 5)
    out = gm(logits, torch.zeros(4))
    assert list(out) == ["(automatic)", "acc"] and out["acc"].shape == ()
    only_loss = _INPUT + ('layer { name: "loss" type: "SoftmaxWithLoss"\n'
                          '  bottom: "data" bottom: "label" }\n')
    named = only_loss.replace('bottom: "label" }', 'bottom: "label" top: "loss" }')
    data, label = torch.randn(4, 5), torch.tensor([0.0, 3.0, 1.0, 4.0])
    got = caffe_fx.compile(only_loss)(data, label)
    assert list(got) == ["(automatic)"]  # the same loss as the layer with a named top
    assert torch.equal(got["(automatic)"], caffe_fx.compile(named)(data, label)["loss"])


def test_prob_top_is_softmax():
    # BVLC Caffe cannot set this layer up (its internal Softmax copies both loss_weights);
    # caffe_fx computes the loss as with one top, and the softmax as the second top.
    rec = _golden("softmaxwithloss-basic")
    net = _INPUT + ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label"\n'
                    '  top: "loss" top: "prob" loss_weight: 1 loss_weight: 0 }\n')
    data, label = torch.from_numpy(rec["input/data"]), torch.from_numpy(rec["input/label"])
    out = caffe_fx.compile(net)(data, label)
    np.testing.assert_allclose(out["loss"].numpy(), rec["data/loss"], rtol=1e-6)
    torch.testing.assert_close(out["prob"], torch.softmax(data, 1))


def test_two_tops_need_two_loss_weights():
    net = _INPUT + ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label"\n'
                    '  top: "loss" top: "prob" }\n')
    with pytest.raises(NetDefinitionError, match=r"'loss' \(SoftmaxWithLoss\): has 2 tops and "
                                                 r"no loss_weight"):
        caffe_fx.compile(net)


def test_label_count_must_match():
    net = _INPUT.replace("shape { dim: 4 } }", "shape { dim: 4 dim: 2 } }") + (
        'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" top: "l" }\n')
    with pytest.raises(ShapeError, match="label of shape \\[4, 2\\] holds 8 values"):
        caffe_fx.compile(net)


_LOSS = _INPUT + ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label"\n'
                  '  top: "loss" IGNORE }\n')


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("label, ignore, bad", [
    ([0.0, 5.0, 1.0, 2.0], None, 5),  # one past the 5 classes
    ([0.0, 1.0, -1.0, 2.0], None, -1),
    ([255.0, 7.0, 1.0, 2.0], 255, 7),  # the ignored value may be out of range; 7 may not
])
def test_a_label_outside_the_classes_is_an_input_error(label, ignore, bad, grad):
    """Caffe's DCHECKs on the labels that count (a release build reads past the
    probabilities): the error names the layer, the label and what is allowed."""
    param = "" if ignore is None else f"loss_param {{ ignore_label: {ignore} }}"
    gm = caffe_fx.compile(_LOSS.replace("IGNORE", param))
    data = torch.randn(4, 5, requires_grad=grad)
    allowed = "allowed: 0 to 4" + ("" if ignore is None else f", or ignore_label {ignore}")
    with pytest.raises(InputError, match=rf"layer 'loss' \(SoftmaxWithLoss\): label {bad} is "
                                         rf"not a class of the 5 along axis 1; {allowed}"):
        gm(data, torch.tensor(label))
    ok = [v if v != bad else 3.0 for v in label]  # the ignored value alone passes
    assert torch.isfinite(gm(data, torch.tensor(ok))["loss"])
