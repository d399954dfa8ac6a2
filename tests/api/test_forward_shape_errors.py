"""A forward on shapes Caffe's Reshape() would reject names the layer, its type, the
shapes and Caffe's CHECK text (issue #12), eager, exported and scripted alike; a
forward on shapes Caffe accepts (another batch size) still runs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import caffe_fx
from caffe_fx import errors


def _net(inputs: dict[str, tuple[int, ...]], body: str) -> str:
    text = 'name: "t"\n'
    for name, shape in inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        text += (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
                 f'input_param {{ shape {{ {dims} }} }} }}\n')
    return text + body


def _layer(name: str, kind: str, bottoms: list[str], extra: str = "") -> str:
    bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
    return f'layer {{ name: "{name}" type: "{kind}" {bottom} top: "{name}" {extra} }}\n'


def _check(gm, good: dict, bad: dict, message: str, scripted: bool = True) -> None:
    """`bad` raises ShapeError with exactly `message` (eager and exported), RuntimeError
    with the same text under TorchScript; `good` runs in all three."""
    ref = gm(**good)
    with pytest.raises(errors.ShapeError) as info:
        gm(**bad)
    assert str(info.value) == message
    exported = torch.export.export(gm, (), good).module()
    for a, b in zip(exported(**good).values(), ref.values()):
        assert torch.equal(a, b)
    if scripted:
        script = torch.jit.script(gm)
        for a, b in zip(script(**good).values(), ref.values()):
            assert torch.equal(a, b)
        with pytest.raises(torch.jit.Error, match=re.escape(message)):
            script(**bad)


@pytest.mark.parametrize("op, kwargs", [("SUM", ""), ("PROD", ""), ("MAX", ""),
                                        ("SUM", "coeff: 1 coeff: -1")])
def test_eltwise_bottoms_must_match(op, kwargs):
    gm = caffe_fx.compile(_net({"a": (2, 3, 4, 4), "b": (2, 3, 4, 4)}, _layer(
        "sum", "Eltwise", ["a", "b"], f"eltwise_param {{ operation: {op} {kwargs} }}")))
    _check(gm, dict(a=torch.randn(5, 3, 4, 4), b=torch.randn(5, 3, 4, 4)),
           dict(a=torch.randn(2, 3, 4, 4), b=torch.randn(2, 3, 5, 5)),
           "layer 'sum' (Eltwise): bottom[1] of shape [2, 3, 5, 5] does not match bottom[0] "
           "of shape [2, 3, 4, 4] (all bottoms must have the same shape, no broadcasting); "
           'Caffe: "bottom[0]->shape() == bottom[i]->shape()"')


def test_eltwise_third_bottom():
    gm = caffe_fx.compile(_net({"a": (2, 3), "b": (2, 3), "c": (2, 3)},
                               _layer("e", "Eltwise", ["a", "b", "c"])))
    with pytest.raises(errors.ShapeError, match=r"^layer 'e' \(Eltwise\): bottom\[2\] of "
                                                r"shape \[2, 4\] does not match bottom\[0\] "
                                                r"of shape \[2, 3\]"):
        gm(a=torch.zeros(2, 3), b=torch.zeros(2, 3), c=torch.zeros(2, 4))


def test_the_issue_example_names_the_eltwise():
    body = (_layer("sum", "Eltwise", ["a", "b"])
            + _layer("pool", "Pooling", ["sum"], "pooling_param { pool: MAX kernel_size: 2 }")
            + _layer("ip", "InnerProduct", ["pool"], "inner_product_param { num_output: 3 }"))
    gm = caffe_fx.compile(_net({"a": (2, 3, 4, 4), "b": (2, 3, 4, 4)}, body))
    with pytest.raises(errors.ShapeError, match=r"^layer 'sum' \(Eltwise\): bottom\[1\] of "
                                                r"shape \[2, 3, 5, 5\]"):
        gm(a=torch.randn(2, 3, 4, 4), b=torch.randn(2, 3, 5, 5))


LABELS = "Number of labels must match number of predictions"
FIRST = "The data and label should have the same first dimension."


@pytest.mark.parametrize("kind, extra", [("SoftmaxWithLoss", ""), ("Accuracy", ""),
                                         ("SoftmaxWithLoss", "softmax_param { axis: 1 }")])
def test_label_count_must_match_predictions(kind, extra):
    gm = caffe_fx.compile(_net({"x": (2, 5, 3), "y": (2, 3)},
                               _layer("l", kind, ["x", "y"], extra)))
    _check(gm, dict(x=torch.randn(4, 5, 3), y=torch.zeros(4, 3)),
           dict(x=torch.randn(2, 5, 3), y=torch.zeros(2, 4)),
           f"layer 'l' ({kind}): label of shape [2, 4] holds 8 values; the prediction of "
           f'shape [2, 5, 3] with axis 1 needs outer * inner = 6; Caffe: "{LABELS}"')


@pytest.mark.parametrize("kind", ["SoftmaxWithLoss", "SigmoidCrossEntropyLoss",
                                  "EuclideanLoss"])
def test_loss_first_dimensions_must_match(kind):
    gm = caffe_fx.compile(_net({"x": (2, 3), "y": (2, 3) if kind != "SoftmaxWithLoss"
                                else (2,)}, _layer("l", kind, ["x", "y"])))
    label = (3, 3) if kind != "SoftmaxWithLoss" else (3,)
    _check(gm, dict(x=torch.randn(4, 3), y=torch.zeros(label[:0] + (4,) + label[1:])),
           dict(x=torch.randn(2, 3), y=torch.zeros(label)),
           f"layer 'l' ({kind}): bottoms of shape [2, 3] and {list(label)} differ in the "
           f'first dimension; Caffe: "{FIRST}"')


@pytest.mark.parametrize("kind", ["HingeLoss", "MultinomialLogisticLoss"])
def test_index_label_losses_first_dimensions_must_match(kind):
    gm = caffe_fx.compile(_net({"x": (2, 3), "y": (2,)}, _layer("l", kind, ["x", "y"])))
    _check(gm, dict(x=torch.rand(4, 3), y=torch.zeros(4)),
           dict(x=torch.rand(2, 3), y=torch.zeros(3)),
           f"layer 'l' ({kind}): bottoms of shape [2, 3] and [3] differ in the first "
           f'dimension; Caffe: "{FIRST}"')


def test_multinomial_logistic_label_is_one_value_per_sample():
    gm = caffe_fx.compile(_net({"x": (2, 3), "y": (2,)},
                               _layer("l", "MultinomialLogisticLoss", ["x", "y"])))
    _check(gm, dict(x=torch.rand(4, 3), y=torch.zeros(4)),
           dict(x=torch.rand(2, 3), y=torch.zeros(2, 2)),
           "layer 'l' (MultinomialLogisticLoss): label of shape [2, 2] is not one value per "
           'sample; Caffe: "bottom[1]->channels() == 1"')


def test_contrastive_pairs_must_match():
    gm = caffe_fx.compile(_net({"a": (2, 3, 1, 1), "b": (2, 3, 1, 1), "s": (2,)},
                               _layer("l", "ContrastiveLoss", ["a", "b", "s"])))
    good = dict(a=torch.randn(4, 3, 1, 1), b=torch.randn(4, 3, 1, 1), s=torch.zeros(4))
    _check(gm, good, dict(a=torch.randn(2, 3, 1, 1), b=torch.randn(2, 4, 1, 1),
                          s=torch.zeros(2)),
           "layer 'l' (ContrastiveLoss): bottoms of shape [2, 3, 1, 1] and [2, 4, 1, 1] are "
           'not two (N, C, 1, 1) blobs of one shape; Caffe: '
           '"bottom[0]->channels() == bottom[1]->channels()"')
    _check(gm, good, dict(a=torch.randn(2, 3, 1, 1), b=torch.randn(3, 3, 1, 1),
                          s=torch.zeros(2)),
           "layer 'l' (ContrastiveLoss): bottoms of shape [2, 3, 1, 1] and [3, 3, 1, 1] "
           f'differ in the first dimension; Caffe: "{FIRST}"')


@pytest.mark.parametrize("pool, extra, tops", [
    ("MAX", "kernel_size: 5", ""), ("AVE", "kernel_size: 5", ""),
    ("MAX", "kernel_size: 5", 'top: "mask"')])
def test_pooling_kernel_must_fit_the_forward_bottom(pool, extra, tops):
    body = (f'layer {{ name: "p" type: "Pooling" bottom: "x" top: "p" {tops} '
            f"pooling_param {{ pool: {pool} {extra} }} }}\n")
    gm = caffe_fx.compile(_net({"x": (1, 3, 8, 8)}, body))
    _check(gm, dict(x=torch.randn(2, 3, 9, 7)), dict(x=torch.randn(1, 3, 8, 3)),
           "layer 'p' (Pooling): bottom of shape [1, 3, 8, 3] is smaller than the kernel "
           '[5, 5] with pad [0, 0]: the top would have -1 rows; Caffe: "shape[i] >= 0"')


def test_sigmoid_cross_entropy_counts_must_match():
    gm = caffe_fx.compile(_net({"x": (2, 3), "y": (2, 3)},
                               _layer("l", "SigmoidCrossEntropyLoss", ["x", "y"])))
    _check(gm, dict(x=torch.randn(4, 3), y=torch.zeros(4, 3)),
           dict(x=torch.randn(2, 3), y=torch.zeros(2, 4)),
           "layer 'l' (SigmoidCrossEntropyLoss): bottoms of shape [2, 3] and [2, 4] differ "
           'in count; Caffe: "SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same '
           'count."')


def test_euclidean_counts_must_match():
    gm = caffe_fx.compile(_net({"x": (2, 3), "y": (2, 3)},
                               _layer("l", "EuclideanLoss", ["x", "y"])))
    _check(gm, dict(x=torch.randn(4, 3), y=torch.zeros(4, 3, 1)),
           dict(x=torch.randn(2, 3), y=torch.zeros(2, 4)),
           "layer 'l' (EuclideanLoss): bottoms of shape [2, 3] and [2, 4] differ in "
           'count(1); Caffe: "Inputs must have the same dimension."')


def test_infogain_label_count_must_match_predictions():
    gm = caffe_fx.compile(_net({"x": (2, 3), "y": (2,), "h": (3, 3)},
                               _layer("l", "InfogainLoss", ["x", "y", "h"])))
    h = torch.eye(3)
    _check(gm, dict(x=torch.randn(4, 3), y=torch.zeros(4), h=h),
           dict(x=torch.randn(2, 3), y=torch.zeros(2, 2), h=h),
           "layer 'l' (InfogainLoss): label of shape [2, 2] holds 4 values; the prediction "
           f'of shape [2, 3] with axis 1 needs outer * inner = 2; Caffe: "{LABELS}"')


def test_concat_bottoms_must_match_but_on_the_axis():
    gm = caffe_fx.compile(_net({"a": (2, 3, 4), "b": (2, 5, 4)},
                               _layer("cat", "Concat", ["a", "b"])))
    _check(gm, dict(a=torch.randn(3, 3, 4), b=torch.randn(3, 1, 4)),
           dict(a=torch.randn(2, 3, 4), b=torch.randn(2, 5, 6)),
           "layer 'cat' (Concat): bottom[1] of shape [2, 5, 6] differs from bottom[0] of "
           "shape [2, 3, 4] at axis 2 (only the concat axis 1 may differ); Caffe: \"All "
           'inputs must have the same shape, except at concat_axis."')
    with pytest.raises(errors.ShapeError, match=r"^layer 'cat' \(Concat\): bottom\[1\] of "
                                                r"shape \[2, 5\] has 2 axes; bottom\[0\] of "
                                                r"shape \[2, 3, 4\] has 3; Caffe: \"All "
                                                r"inputs must have the same #axes.\"$"):
        gm(a=torch.randn(2, 3, 4), b=torch.randn(2, 5))


def test_slice_equal_pieces_and_points():
    gm = caffe_fx.compile(_net({"x": (2, 6)}, 'layer { name: "s" type: "Slice" bottom: "x" '
                                              'top: "p" top: "q" }'))
    _check(gm, dict(x=torch.randn(3, 8)), dict(x=torch.randn(2, 7)),
           "layer 's' (Slice): axis 1 of size 7 of the bottom of shape [2, 7] cannot be "
           'sliced equally into 2 tops; Caffe: "Number of top blobs (2) should evenly '
           'divide input slice axis (7)"')
    gm = caffe_fx.compile(_net({"x": (2, 6)}, 'layer { name: "s" type: "Slice" bottom: "x" '
                                              'top: "p" top: "q" slice_param { '
                                              'slice_point: 4 } }'))
    out = gm(x=torch.randn(2, 4))  # Caffe's last top has 0 columns
    assert list(out["q"].shape) == [2, 0]
    _check(gm, dict(x=torch.randn(2, 5)), dict(x=torch.randn(2, 3)),
           "layer 's' (Slice): slice_point [4] runs past axis 1 of size 3 of the bottom of "
           'shape [2, 3] (the last top would get size -1); Caffe: "shape[i] >= 0"')


def test_reshape_count_must_match():
    gm = caffe_fx.compile(_net({"x": (2, 6)}, _layer("r", "Reshape", ["x"],
                                                     "reshape_param { shape { dim: 0 dim: 2 "
                                                     "dim: 3 } }")))
    _check(gm, dict(x=torch.randn(5, 6)), dict(x=torch.randn(2, 7)),
           "layer 'r' (Reshape): bottom of shape [2, 7] holds 14 values, which do not fit "
           'the top shape [2, 2, 3]; Caffe: "output count must match input count"')
    gm = caffe_fx.compile(_net({"x": (2, 6)}, _layer("r", "Reshape", ["x"],
                                                     "reshape_param { shape { dim: 4 "
                                                     "dim: -1 } }")))
    _check(gm, dict(x=torch.randn(4, 3)), dict(x=torch.randn(1, 6)),
           "layer 'r' (Reshape): bottom of shape [1, 6] holds 6 values, which do not fit "
           "the top shape [4, -1]; Caffe: \"bottom count (6) must be divisible by the "
           'product of the specified dimensions (4)"')


def test_crop_must_fit():
    gm = caffe_fx.compile(_net({"x": (1, 2, 8, 8), "ref": (1, 2, 4, 4)}, _layer(
        "c", "Crop", ["x", "ref"], "crop_param { axis: 2 offset: 3 }")))
    _check(gm, dict(x=torch.randn(1, 2, 9, 9), ref=torch.randn(1, 2, 5, 5)),
           dict(x=torch.randn(1, 2, 8, 8), ref=torch.randn(1, 2, 6, 4)),
           "layer 'c' (Crop): bottom of shape [1, 2, 8, 8] cannot be cropped to the "
           "reference of shape [1, 2, 6, 4]: axis 2 of size 8 at offset 3 has no room for 6; "
           'Caffe: "the crop for dimension 2 is out-of-bounds with size 6 and offset 3"')


@pytest.mark.parametrize("kind", ["Scale", "Bias"])
def test_scale_and_bias_second_bottom_must_fit(kind):
    gm = caffe_fx.compile(_net({"x": (2, 3, 4), "s": (3,)}, _layer("l", kind, ["x", "s"])))
    what = kind.lower()
    _check(gm, dict(x=torch.randn(5, 3, 2), s=torch.randn(3)),
           dict(x=torch.randn(2, 3, 4), s=torch.randn(4)),
           f"layer 'l' ({kind}): bottom[1] of shape [4] does not match bottom[0] of shape "
           f'[2, 3, 4] from axis 1; Caffe: "dimension mismatch between bottom[0]->shape(1) '
           f'and {what}->shape(0)"')
    with pytest.raises(errors.ShapeError, match=rf"^layer 'l' \({kind}\): bottom\[1\] of "
                                                r"shape \[3, 4\] extends past bottom\[0\] of "
                                                r"shape \[2, 3\] from axis 1"):
        gm(x=torch.randn(2, 3), s=torch.randn(3, 4))


GOLDEN = json.loads((Path(__file__).parent.parent / "golden" / "shape_errors"
                     / "checks.json").read_text())
RUNS = GOLDEN.pop("runs")
CHECKS = GOLDEN


@pytest.mark.parametrize("case", sorted(RUNS))
def test_shapes_caffe_runs_still_run(case):
    """E.g. ceil rounding with stride 6 gives a bottom of width 3 one window, clipped
    to the bottom (ceil((3 - 5) / 6) + 1 = 1): real Caffe pools it, so must we."""
    c = RUNS[case]
    gm = caffe_fx.compile(_net({k: tuple(v) for k, v in c["good"].items()}, c["body"]))
    blobs = {k: torch.tensor(v) for k, v in c["blobs"].items()}
    got = gm(**{k: blobs[k] for k in c["good"]})
    for name, value in got.items():
        torch.testing.assert_close(value, blobs[name], rtol=0, atol=0)


@pytest.mark.parametrize("case", sorted(CHECKS))
def test_the_quoted_check_is_the_one_real_caffe_aborts_with(case):
    """tools/make_shape_errors_goldens.py set real Caffe up on `bad`; its CHECK line must
    hold the text our error quotes for a forward on those shapes."""
    c = CHECKS[case]
    gm = caffe_fx.compile(_net({k: tuple(v) for k, v in c["good"].items()}, c["body"]))
    with pytest.raises(errors.ShapeError) as info:
        gm(**{k: torch.zeros(v) for k, v in c["bad"].items()})
    quoted = re.search(r'; Caffe: "(.*)"$', str(info.value)).group(1)
    assert quoted in c["caffe"]
