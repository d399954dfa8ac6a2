"""ppengtang/caffe's (OICR) layers against the fork run for real: WeightedSoftmaxWithLoss,
GlobalSumPooling, MulticlassCrossEntropyLoss, MulticlassSigmoidCrossEntropyLoss and TEST
Dropout with scale_train; the 2-bottom SmoothL1Loss against weiliu89/caffe's (SSD) CPU code
(goldens: tools/make_rcnn_goldens.py).  Forward tops and the input diffs, the latter from
plain autograd on compile()'s output; the fork's inf and nan (p = 1 in
MulticlassCrossEntropyLoss, exp overflow in the sigmoid one) are matched too.  Then the
published OICR and py-faster-rcnn nets' own layer definitions, from ../shared/models."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from google.protobuf import text_format

import caffe_fx
from caffe_fx.errors import NetDefinitionError, ShapeError
from caffe_fx.proto import caffe_pb2
from tests.golden.harness import load_record as _load, relative_error

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "rcnn_layers"
# TRAIN Dropout draws torch's mask: tests/layers/test_dropout.py checks its form.
CASES = sorted(p for p in GOLDEN.glob("*.npz") if "_train" not in p.stem)


def _tops(rec: dict[str, np.ndarray]) -> list[str]:
    return [k[5:] for k in rec if k.startswith("data/") and f"input/{k[5:]}" not in rec]


def _inputs(rec: dict[str, np.ndarray], grad: bool) -> dict[str, torch.Tensor]:
    return {k[6:]: torch.from_numpy(v.copy()).requires_grad_(grad and f"diff/{k[6:]}" in rec)
            for k, v in rec.items() if k.startswith("input/")}


def _close(ours: np.ndarray, caffe: np.ndarray, what: str, tol: float = 1e-5) -> None:
    assert ours.shape == caffe.shape, f"{what}: shape {ours.shape}, Caffe's {caffe.shape}"
    finite = np.isfinite(caffe)
    # inf and nan where the fork has them, and the same sign of inf
    np.testing.assert_array_equal(ours[~finite], caffe[~finite], err_msg=what)
    assert np.isfinite(ours[finite]).all(), what
    err = relative_error(ours[finite], caffe[finite]) if finite.any() else 0.0
    assert err <= tol, f"{what} differs from the fork by {err:.3g} (relative)"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_the_fork_forward_and_backward(path: Path) -> None:
    rec = _load(path)
    tops = _tops(rec)
    gm = caffe_fx.compile(str(rec["prototxt"]), phase=str(rec["phase"]), outputs=tops)
    inputs = _inputs(rec, grad=True)
    out = gm(**inputs)
    for t in tops:
        _close(out[t].detach().numpy(), rec[f"data/{t}"], f"{path.stem}: top {t}")
    # Loss tops are seeded by their loss_weight (Caffe's diff/<loss>), others by topdiff/.
    seeds = {t: torch.from_numpy(rec[f"topdiff/{t}"]) if f"topdiff/{t}" in rec
             else torch.tensor(_loss_weight(rec, t)) for t in tops}
    torch.autograd.backward([out[t] for t in tops], [seeds[t] for t in tops])
    for name, x in inputs.items():
        if f"diff/{name}" in rec:
            _close(x.grad.numpy(), rec[f"diff/{name}"], f"{path.stem}: diff of {name}")
        else:  # labels and weights: the layers never backpropagate to them
            assert x.grad is None


def _loss_weight(rec: dict[str, np.ndarray], top: str) -> float:
    """The case's one layer's loss_weight (1 when unset), which Caffe seeds the loss with."""
    net = text_format.Parse(str(rec["prototxt"]), caffe_pb2.NetParameter())
    layer = next(ly for ly in net.layer if top in ly.top)
    return layer.loss_weight[0] if layer.loss_weight else 1.0


def test_labels_and_weights_get_no_gradient() -> None:
    rec = _load(GOLDEN / "wsl_ignore.npz")
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=["loss"])
    inputs = {k: v.detach().requires_grad_(True) for k, v in _inputs(rec, False).items()}
    gm(**inputs)["loss"].backward()
    assert inputs["data"].grad is not None
    assert inputs["label"].grad is None and inputs["weight"].grad is None


SCRIPTABLE = ["wsl_ignore", "gsp_4d", "mce_clamp_low", "msce_basic", "dropout_unscaled_test"]


@pytest.mark.parametrize("case", SCRIPTABLE)
def test_script_and_export_give_the_same_values(case: str) -> None:
    rec = _load(GOLDEN / f"{case}.npz")
    tops = _tops(rec)
    gm = caffe_fx.compile(str(rec["prototxt"]), phase=str(rec["phase"]), outputs=tops)
    inputs = _inputs(rec, grad=False)
    with torch.no_grad():
        ours = gm(**inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation
            scripted = torch.jit.script(gm)(**inputs)
        exported = torch.export.export(gm, (), inputs).module()(**inputs)
    for t in tops:
        torch.testing.assert_close(scripted[t], ours[t], rtol=0, atol=0)
        torch.testing.assert_close(exported[t], ours[t], rtol=0, atol=0)


def test_torch_compile_backward_matches_eager() -> None:
    rec = _load(GOLDEN / "mce_basic.npz")
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=["loss"])
    x = torch.from_numpy(rec["input/data"]).requires_grad_(True)
    label = torch.from_numpy(rec["input/label"])
    compiled = torch.compile(gm, backend="aot_eager")
    compiled(data=x, label=label)["loss"].backward()
    _close(x.grad.numpy(), rec["diff/data"], "compiled MulticlassCrossEntropyLoss diff")


def _net(layer: str, **shapes: tuple[int, ...]) -> str:
    head = "".join(f'layer {{ name: "{b}" type: "Input" top: "{b}" input_param {{ shape {{ '
                   + " ".join(f"dim: {d}" for d in s) + " } } }\n" for b, s in shapes.items())
    return head + layer


def test_weighted_softmax_refuses_weights_of_another_count() -> None:
    text = _net('layer { name: "wsl" type: "WeightedSoftmaxWithLoss" bottom: "s" bottom: "l" '
                'bottom: "w" top: "loss" }', s=(4, 3), l=(4,), w=(3,))
    with pytest.raises(ShapeError, match=r"layer 'wsl' \(WeightedSoftmaxWithLoss\).*weights "
                                         r"of shape \[3\].*first dimension of 4"):
        caffe_fx.compile(text)


def test_multiclass_loss_refuses_spatial_bottoms() -> None:
    text = _net('layer { name: "mce" type: "MulticlassCrossEntropyLoss" bottom: "p" '
                'bottom: "y" top: "loss" }', p=(2, 3, 2, 2), y=(2, 3, 2, 2))
    with pytest.raises(ShapeError, match=r"layer 'mce' .*\[2, 3, 2, 2\].*N \* C"):
        caffe_fx.compile(text)


def test_global_sum_pooling_refuses_one_axis() -> None:
    text = _net('layer { name: "gsp" type: "GlobalSumPooling" bottom: "x" top: "y" }', x=(5,))
    with pytest.raises(ShapeError, match=r"layer 'gsp' \(GlobalSumPooling\).*at least 2 axes"):
        caffe_fx.compile(text)


def test_global_sum_pooling_refuses_in_place() -> None:
    """The top is (1, ...): Caffe's in-place GlobalSumPooling would zero item 0 first."""
    text = _net('layer { name: "gsp" type: "GlobalSumPooling" bottom: "x" top: "x" }', x=(3, 2))
    with pytest.raises(NetDefinitionError, match=r"layer 'gsp' \(GlobalSumPooling\) cannot "
                                                 r"work in place"):
        caffe_fx.compile(text)


@pytest.mark.oracle
def test_goldens_are_reproduced_by_the_fork(tmp_path: Path) -> None:
    """The generator still gives the committed numbers (needs root and the oicr overlay)."""
    from tests.nets.oracle import oracle_unavailable
    why = oracle_unavailable()
    if why:
        pytest.skip(why)
    from tools import make_rcnn_goldens as M
    M.make_fork_golden(next(c for c in M.CASES if c.name == "mce_clamp_low"), tmp_path, "oicr")
    new, old = _load(tmp_path / "mce_clamp_low.npz"), _load(GOLDEN / "mce_clamp_low.npz")
    compared = [k for k in new if k.startswith(("data/", "diff/"))]
    assert "data/loss" in compared and "diff/data" in compared
    for k in compared:
        np.testing.assert_array_equal(new[k], old[k])


def _published(models: Path, rel: str) -> caffe_pb2.NetParameter:
    path = models / rel
    if not path.exists():
        pytest.skip(f"needs {path}")
    return text_format.Parse(path.read_text(), caffe_pb2.NetParameter())


def _alone(net: caffe_pb2.NetParameter, names: list[str],
           shapes: dict[str, tuple[int, ...]]) -> str:
    """Those layers of a published net, fed from Input layers of the given shapes."""
    text = "".join(f'layer {{ name: "{b}" type: "Input" top: "{b}" input_param {{ shape {{ '
                   + " ".join(f"dim: {d}" for d in s) + " } } }\n" for b, s in shapes.items())
    for layer in net.layer:
        if layer.name in names:
            text += "layer {\n" + text_format.MessageToString(layer) + "}\n"
    return text


def test_oicr_losses_as_published(shared_models: Path) -> None:
    """OICR's midn loss (GlobalSumPooling into MulticlassCrossEntropyLoss) and its
    WeightedSoftmaxWithLoss with propagate_down 1 0 0, read from ../shared/models."""
    net = _published(shared_models, "ppengtang+oicr/models/VGG16/train.prototxt")
    text = _alone(net, ["global_pool", "loss_midn", "loss_oicr"],
                  {"midn_prob": (5, 20), "labels": (1, 20), "ic_score": (5, 21),
                   "labels_ic": (5,), "cls_loss_weights": (5,)})
    gm = caffe_fx.compile(text, phase="train")
    r = np.random.RandomState(3)
    p = torch.from_numpy((r.rand(5, 20) / 5).astype(np.float32)).requires_grad_(True)
    y = torch.from_numpy((r.rand(1, 20) < 0.3).astype(np.float32))
    s = torch.from_numpy(r.randn(5, 21).astype(np.float32)).requires_grad_(True)
    lab = torch.tensor([0.0, 3.0, 20.0, 7.0, 0.0])
    w = torch.tensor([0.5, 0.9, 0.0, 0.7, 1.0])
    out = gm(midn_prob=p, labels=y, ic_score=s, labels_ic=lab, cls_loss_weights=w)
    # float64 models of the two Forward_cpu
    q = np.clip(p.detach().numpy().astype(np.float64).sum(0), 1e-10, 1)
    t = y.numpy()[0]
    midn = -(t * np.log(q) + (1 - t) * np.log(1 - q)).sum()
    z = s.detach().numpy().astype(np.float64)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    oicr = -(w.numpy() * logp[np.arange(5), lab.numpy().astype(int)]).sum() / 4  # 4 w > 0
    assert abs(out["loss_midn"].item() - midn) <= 1e-5 * abs(midn)
    assert abs(out["loss_oicr"].item() - oicr) <= 1e-5 * abs(oicr)
    (out["loss_midn"] + out["loss_oicr"]).backward()
    dq = (q - t) / (20 * q * (1 - q))  # the fork's backward, broadcast by the sum pooling
    np.testing.assert_allclose(p.grad.numpy(), np.broadcast_to(dq, (5, 20)), rtol=1e-5)
    assert s.grad is not None


def test_zf_dropout_scale_train_as_published(shared_models: Path) -> None:
    """py-faster-rcnn's ZF test net: drop6 has scale_train: false, so TEST halves fc6."""
    net = _published(shared_models,
                     "rbgirshick+py-faster-rcnn/models/pascal_voc/ZF/faster_rcnn_end2end/"
                     "test.prototxt")
    drop = next(layer for layer in net.layer if layer.type == "Dropout")
    assert not drop.dropout_param.scale_train
    gm = caffe_fx.compile(_alone(net, [drop.name], {drop.bottom[0]: (2, 8)}),
                          outputs=[drop.top[0]])
    x = torch.full((2, 8), 4.0)
    out = gm(**{drop.bottom[0]: x})[drop.top[0]]
    torch.testing.assert_close(out, x * (1 - drop.dropout_param.dropout_ratio))
