"""SegNet's SoftmaxWithLoss class weighting (loss_param weight_by_label_freqs,
class_weighting) and Dropout sample_weights_test against alexgkendall/caffe-segnet run for
real: tests/golden/segnet_loss/*.npz (tools/make_segnet_loss_goldens.py,
CAFFE_ORACLE_FORK=segnet) hold the fork's tops and bottom diffs; compile() reads each
case's prototxt with the fork's field names, and plain autograd on its output gives the
diffs.  The fork's 0 / 0 when every label is ignored (NaN loss and diffs) is matched too.

MC Dropout's mask is torch's, not Caffe's RNG (a deliberate difference, as for TRAIN
Dropout): `dropout_sample_test` is checked for its form (0 or x / (1 - ratio), the diff
through the same mask) and its drop rate, not element by element."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import caffe_fx
from caffe_fx.errors import IgnoredFieldWarning, InputError, ShapeError, UnsupportedFieldError
from caffe_fx.ops import loss as L
from caffe_fx.proto import caffe_pb2
from tests.golden.harness import load_record as _load, relative_error

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "segnet_loss"
RANDOM = {"dropout_sample_test"}  # the fork's own random mask
CASES = sorted(p for p in GOLDEN.glob("*.npz") if p.stem not in RANDOM)


def _close(ours: np.ndarray, caffe: np.ndarray, what: str, tol: float = 1e-5) -> None:
    assert ours.shape == caffe.shape, f"{what}: shape {ours.shape}, Caffe's {caffe.shape}"
    finite = np.isfinite(caffe)
    np.testing.assert_array_equal(ours[~finite], caffe[~finite], err_msg=what)  # nan, inf
    assert np.isfinite(ours[finite]).all(), what
    err = relative_error(ours[finite], caffe[finite]) if finite.any() else 0.0
    assert err <= tol, f"{what} differs from the fork by {err:.3g} (relative)"


def _tops(rec: dict[str, np.ndarray]) -> list[str]:
    return [k[5:] for k in rec if k.startswith("data/") and f"input/{k[5:]}" not in rec]


def _loss_weight(rec: dict[str, np.ndarray], top: str) -> float:
    net = text_format.Parse(str(rec["prototxt"]), caffe_pb2.NetParameter())
    layer = next(ly for ly in net.layer if top in ly.top)
    return layer.loss_weight[0] if layer.loss_weight else 1.0


def _run(rec: dict[str, np.ndarray], **compile_kw):
    """compile() + forward + backward (loss tops seeded by their loss_weight, others by
    the golden's top diffs).  Returns (tops, {input: grad or None})."""
    tops = _tops(rec)
    gm = caffe_fx.compile(str(rec["prototxt"]), phase=str(rec["phase"]), outputs=tops,
                          **compile_kw)
    inputs = {k[6:]: torch.from_numpy(v.copy()).requires_grad_(f"diff/{k[6:]}" in rec
                                                                and k[6:] != "label")
              for k, v in rec.items() if k.startswith("input/")}
    out = gm(**inputs)
    seeds = [torch.from_numpy(rec[f"topdiff/{t}"]) if f"topdiff/{t}" in rec
             else torch.tensor(_loss_weight(rec, t)) for t in tops]
    torch.autograd.backward([out[t] for t in tops], seeds)
    return ({t: out[t].detach().numpy() for t in tops},
            {k: v.grad for k, v in inputs.items()})


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_the_fork_forward_and_backward(path: Path) -> None:
    rec = _load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgnoredFieldWarning)  # weights_unused says so
        tops, grads = _run(rec)
    for top, ours in tops.items():
        _close(ours, rec[f"data/{top}"], f"{path.stem}: top {top}")
    _close(grads["data"].numpy(), rec["diff/data"], f"{path.stem}: diff of data")
    assert grads.get("label") is None  # the fork refuses to backpropagate to labels


def test_goldens_cover_the_cases() -> None:
    names = {p.stem for p in GOLDEN.glob("*.npz")}
    assert len(names) == 16
    assert {"softmax_loss_weighted", "softmax_loss_weighted_ignore", "softmax_loss_segnet_camvid",
            "softmax_loss_weighted_unnormalized", "softmax_loss_weighted_all_ignored",
            "dropout_sample_test", "dropout_sample_test_ratio0"} <= names


@pytest.mark.oracle
def test_goldens_are_reproduced_by_the_fork(tmp_path: Path) -> None:
    """The generator still gives the committed numbers (needs root and the segnet overlay)."""
    from tests.nets.oracle import oracle_unavailable
    why = oracle_unavailable()
    if why:
        pytest.skip(why)
    from tools import make_segnet_loss_goldens as M
    case = next(c for c in M.CASES if c.name == "softmax_loss_weighted_ignore")
    M.make_fork_golden(case, tmp_path, "segnet")
    new, old = _load(tmp_path / f"{case.name}.npz"), _load(GOLDEN / f"{case.name}.npz")
    assert {"data/loss", "diff/data"} <= set(new)
    for k in (k for k in new if k.startswith(("data/", "diff/"))):
        # OpenBLAS picks its kernels by CPU, so a fork built on another machine rounds
        # differently: a Zen 5 EPYC moved 9 of 72 diffs by 1 ulp (1.5e-8).
        np.testing.assert_allclose(new[k], old[k], rtol=0,
                                   atol=1e-6 * float(np.abs(old[k]).max()), err_msg=k)


# ---------------------------------------------------------------- class weighting

def test_the_weights_change_the_loss_only_with_weight_by_label_freqs() -> None:
    """class_weighting alone is ignored, as the fork ignores it (forks/FACTS.md), and said;
    with weight_by_label_freqs the same inputs give another loss."""
    rec = _load(GOLDEN / "softmax_loss_weights_unused.npz")
    text = str(rec["prototxt"])
    x, label = torch.from_numpy(rec["input/data"]), torch.from_numpy(rec["input/label"])
    with pytest.warns(IgnoredFieldWarning, match=r"class_weighting is set but "
                                                 r"weight_by_label_freqs is not true"):
        unused = caffe_fx.compile(text)(data=x, label=label)["loss"]
    plain = caffe_fx.compile(text.replace(" loss_param {", " xloss_param {").split(
        " xloss_param")[0] + " }\n")(data=x, label=label)["loss"]
    torch.testing.assert_close(unused, plain, rtol=0, atol=0)
    weighted = caffe_fx.compile(text.replace("loss_param {",
                                             "loss_param { weight_by_label_freqs: true"))
    assert abs(float(weighted(data=x, label=label)["loss"]) - float(plain)) > 0.1


def test_the_forks_backward_is_the_derivative_in_float64() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    label = torch.tensor([[0, 1, 2, 1], [2, 9, 0, 0]], dtype=torch.float64).reshape(2, 1, 2, 2)
    for normalize in (True, False):
        assert torch.autograd.gradcheck(
            lambda a: L.softmax_loss_weighted(a, label, [0.5, 2.0, 1.25], 1, 9, normalize),
            (x,))


def test_a_float64_reference_of_the_forward() -> None:
    """-sum w[y] log p_y over non-ignored positions / their count (not the weights' sum)."""
    rec = _load(GOLDEN / "softmax_loss_weighted_ignore.npz")
    x, y = rec["input/data"].astype(np.float64), rec["input/label"][:, 0].astype(int)
    w = np.array([0.2595, 1.5, 3.25, 0.7])
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    keep = y != 4
    py = np.take_along_axis(p, np.where(keep, y, 0)[:, None], 1)[:, 0]
    ref = -(np.log(py) * w[np.where(keep, y, 0)])[keep].sum() / keep.sum()
    assert abs(ref - float(rec["data/loss"])) <= 1e-5 * abs(ref)


def _net(loss_param: str, shape: tuple[int, ...] = (2, 3, 2, 2), extra: str = "") -> str:
    label = (shape[0], 1, *shape[2:])
    dims = lambda s: " ".join(f"dim: {d}" for d in s)  # noqa: E731
    return (f'input: "data" input_shape {{ {dims(shape)} }}\n'
            f'input: "label" input_shape {{ {dims(label)} }}\n'
            f'layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "label" '
            f'top: "loss" {extra} loss_param: {{ {loss_param} }} }}\n')


_W3 = "class_weighting: 1 class_weighting: 2 class_weighting: 3"


def test_a_weight_count_other_than_the_channels_is_refused() -> None:
    with pytest.raises(ShapeError, match=r"layer 'loss' \(SoftmaxWithLoss\): "
                                         r"loss_param.class_weighting has 2 values but the "
                                         r"bottom of shape \[2, 3, 2, 2\] has 3 channels"):
        caffe_fx.compile(_net("weight_by_label_freqs: true class_weighting: 1 "
                              "class_weighting: 2"))


def test_no_weights_at_all_is_refused() -> None:
    with pytest.raises(ShapeError, match=r"class_weighting has 0 values.*3 channels"):
        caffe_fx.compile(_net("weight_by_label_freqs: true"))


def test_more_classes_than_weights_on_another_axis_is_refused() -> None:
    text = _net(f"weight_by_label_freqs: true {_W3}", (2, 3, 5),
                "softmax_param { axis: 2 }").replace("dim: 2 dim: 1 dim: 5", "dim: 2 dim: 3")
    with pytest.raises(ShapeError, match=r"softmax_param.axis = 2 has 5 classes but "
                                         r"loss_param.class_weighting 3 values"):
        caffe_fx.compile(text)


def test_bvlc_normalization_with_the_segnet_weights_is_refused() -> None:
    with pytest.raises(UnsupportedFieldError, match=r"loss_param.normalization = FULL is not "
                                                    r"supported; supported: loss_param."
                                                    r"normalize"):
        caffe_fx.compile(_net(f"weight_by_label_freqs: true normalization: FULL {_W3}"))


def test_a_forward_with_other_channels_is_a_shape_error() -> None:
    gm = caffe_fx.compile(_net(f"weight_by_label_freqs: true {_W3}"))
    with pytest.raises(ShapeError, match=r"layer 'loss' \(SoftmaxWithLoss\).*\[2, 4, 2, 2\].*"
                                         r"3 class_weighting values; Caffe: \"Number of class "
                                         r"weight values"):
        gm(data=torch.zeros(2, 4, 2, 2), label=torch.zeros(2, 1, 2, 2))


@pytest.mark.parametrize("loss_param", ["", f"weight_by_label_freqs: true {_W3}"],
                         ids=["plain", "weighted"])
@pytest.mark.parametrize("bad", [3, -2])
def test_a_label_outside_the_classes_is_an_input_error(loss_param: str, bad: int) -> None:
    gm = caffe_fx.compile(_net(loss_param + " ignore_label: -1"))
    label = torch.zeros(2, 1, 2, 2)
    label[1, 0, 1, 0] = -1  # ignored: allowed whatever its value
    gm(data=torch.zeros(2, 3, 2, 2), label=label)
    label[0, 0, 0, 1] = bad
    with pytest.raises(InputError, match=rf"layer 'loss' \(SoftmaxWithLoss\): label {bad} is "
                                         r"not a class of the 3 along axis 1; allowed: 0 to "
                                         r"2, or ignore_label -1"):
        gm(data=torch.zeros(2, 3, 2, 2, requires_grad=True), label=label)


def test_the_probability_top_is_the_softmax() -> None:
    text = _net(f"weight_by_label_freqs: true {_W3}").replace('top: "loss"',
                                                             'top: "loss" top: "prob"')
    text = text.replace('top: "prob"', 'top: "prob" loss_weight: 1 loss_weight: 0')
    x = torch.randn(2, 3, 2, 2)
    label = torch.tensor([0.0, 1, 2, 1, 2, 2, 0, 1]).reshape(2, 1, 2, 2)
    out = caffe_fx.compile(text)(data=x, label=label)
    torch.testing.assert_close(out["prob"], torch.softmax(x, 1))
    single = caffe_fx.compile(_net(f"weight_by_label_freqs: true {_W3}"))
    torch.testing.assert_close(out["loss"], single(data=x, label=label)["loss"])


def test_script_and_export_give_the_same_values() -> None:
    rec = _load(GOLDEN / "softmax_loss_weighted_ignore.npz")
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=["loss"])
    inputs = {"data": torch.from_numpy(rec["input/data"]),
              "label": torch.from_numpy(rec["input/label"])}
    with torch.no_grad():
        ours = gm(**inputs)["loss"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation
            scripted = torch.jit.script(gm)(**inputs)["loss"]
        exported = torch.export.export(gm, (), inputs).module()(**inputs)["loss"]
    _close(ours.numpy(), rec["data/loss"], "eager")
    torch.testing.assert_close(scripted, ours, rtol=0, atol=0)
    torch.testing.assert_close(exported, ours, rtol=0, atol=0)


# ---------------------------------------------------------------- MC Dropout

def test_sample_weights_test_draws_a_scaled_mask_as_the_fork_does() -> None:
    """The fork's golden: each top value 0 or x / (1 - 0.4), its diff through that mask.
    Ours: the same form on the same input, and drops ~40% of a large input."""
    rec = _load(GOLDEN / "dropout_sample_test.npz")
    x, td = rec["input/data"], rec["topdiff/out"]
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(0.4))
    for who, y, d in [("the fork", rec["data/out"], rec["diff/data"]),
                      ("caffe_fx", *_sampled(rec))]:
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] * scale, rtol=1e-6, err_msg=who)
        np.testing.assert_allclose(d, np.where(kept, td * scale, 0), rtol=1e-6, err_msg=who)
        assert 0.25 < 1 - kept.mean() < 0.55, who  # 512 draws of p = 0.4
    gm = caffe_fx.compile(str(rec["prototxt"]), phase="test")
    torch.manual_seed(0)
    big = gm(data=torch.ones(64, 4, 8, 8))["out"]
    assert abs(float((big == 0).float().mean()) - 0.4) < 0.02
    values = torch.unique(big).tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(float(scale), rel=1e-6)]
    again = gm(data=torch.ones(64, 4, 8, 8))["out"]
    assert not torch.equal(big, again)  # a fresh mask each forward (MC samples)


def _sampled(rec: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(1)
    tops, grads = _run(rec)
    return tops["out"], grads["data"].numpy()


def test_sample_weights_test_in_place_as_bayesian_segnet_writes_it() -> None:
    """bayesian_segnet_inference.prototxt drops pool3 into itself: the blob holds the
    sampled top, and the diff reaches the bottom through the same mask."""
    text = ('input: "data" input_shape { dim: 8 dim: 4 dim: 6 dim: 6 }\n'
            'layer { name: "drop" type: "Dropout" bottom: "data" top: "data" dropout_param { '
            'dropout_ratio: 0.5 sample_weights_test: true } }\n'
            'layer { name: "sum" type: "Reduction" bottom: "data" top: "sum" }\n')
    gm = caffe_fx.compile(text, phase="test", outputs=["data", "sum"])
    x = torch.rand(8, 4, 6, 6).add(0.5).requires_grad_(True)
    torch.manual_seed(2)
    out = gm(data=x)
    kept = out["data"] != 0
    torch.testing.assert_close(out["data"][kept], x.detach()[kept] * 2)
    assert 0.35 < float(kept.float().mean()) < 0.65
    out["sum"].backward()
    torch.testing.assert_close(x.grad, kept.float() * 2)


def test_sample_weights_test_samples_in_train_too() -> None:
    rec = _load(GOLDEN / "dropout_sample_test.npz")
    gm = caffe_fx.compile(str(rec["prototxt"]), phase="train")
    out = gm(data=torch.ones(4, 4, 8, 8))["out"]
    assert 0 < float((out == 0).float().mean()) < 1


def test_without_sample_weights_test_test_dropout_is_the_identity() -> None:
    rec = _load(GOLDEN / "dropout_sample_test_false.npz")
    gm = caffe_fx.compile(str(rec["prototxt"]), phase="test")
    assert "dropout" not in gm.code
    np.testing.assert_array_equal(rec["data/out"], rec["input/data"])  # the fork's, too
    out = gm(data=torch.from_numpy(rec["input/data"]))["out"]
    np.testing.assert_array_equal(out.numpy(), rec["data/out"])


def test_sample_weights_test_with_scale_train_false_is_refused() -> None:
    text = ('input: "data" input_shape { dim: 2 dim: 3 }\n'
            'layer { name: "drop" type: "Dropout" bottom: "data" top: "out" dropout_param { '
            'scale_train: false sample_weights_test: true } }\n')
    with pytest.raises(UnsupportedFieldError, match=r"layer 'drop' \(Dropout\): dropout_param."
                                                    r"scale_train = false is not supported"):
        caffe_fx.compile(text)
