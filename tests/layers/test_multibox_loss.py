"""SSD's MultiBoxLoss against weiliu89/caffe (branch ssd), run for real:
tests/golden/multibox/*.npz (tools/make_multibox_goldens.py, CAFFE_ORACLE_FORK=ssd) hold the
fork's loss and the diffs of loc and conf, for its matching (PER_PREDICTION, BIPARTITE, on
priors or on decoded predictions), mining (MAX_NEGATIVE, HARD_EXAMPLE with and without
nms_param, NONE), SOFTMAX and LOGISTIC, SmoothL1 and L2, every code_type, share_location
false, difficult ground truth, images without ground truth, each normalization and
loss_weight.  compile() runs each case's prototxt; the diffs come from plain autograd on
its output, seeded with the loss_weight as Caffe seeds the loss.

The fork's backward is not the derivative where it copies the diff of values divided by
the variance (encode_variance_in_target) back unchanged; the golden shows it and autograd
of the same loss differs (below)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import caffe_fx
from caffe_fx.errors import ExportError, InputError, ShapeError, UnsupportedFieldError
from caffe_fx.proto import caffe_pb2
from tests.golden.harness import assert_like_fork as _close, load_record as _load, relative_error

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "multibox"
CASES = sorted(p for p in GOLDEN.glob("*.npz") if not p.stem.startswith("net_"))
BOTTOMS = ("loc", "conf", "prior", "label")


def _loss_weight(rec: dict[str, np.ndarray]) -> float:
    net = text_format.Parse(str(rec["prototxt"]), caffe_pb2.NetParameter())
    layer = net.layer[0]
    return layer.loss_weight[0] if layer.loss_weight else 1.0


def _run(rec: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=["loss"])
    inputs = {b: torch.from_numpy(rec[f"input/{b}"].copy()).requires_grad_(b in ("loc", "conf"))
              for b in BOTTOMS}
    loss = gm(**inputs)["loss"]
    loss.backward(torch.tensor(_loss_weight(rec)))
    return loss.detach(), inputs


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_the_fork_forward_and_backward(path: Path) -> None:
    rec = _load(path)
    loss, inputs = _run(rec)
    _close(loss.numpy(), rec["data/loss"], f"{path.stem}: loss")
    for blob in ("loc", "conf"):
        grad = inputs[blob].grad
        ours = np.zeros_like(rec[f"input/{blob}"]) if grad is None else grad.numpy()
        want = rec.get(f"diff/{blob}")
        if want is None:  # propagate_down: false: no diff, and no term in the loss
            assert grad is None or not grad.any(), f"{path.stem}: {blob} got a diff"
            continue
        _close(ours, want, f"{path.stem}: diff of {blob}")
    assert inputs["prior"].grad is None and inputs["label"].grad is None


def test_goldens_cover_the_cases() -> None:
    names = {p.stem for p in CASES}
    assert len(names) == 32 and (GOLDEN / "net_ssd_train_head.npz").exists()
    assert {"ssd_max_negative", "hard_example_nms", "logistic_l2_none", "share_location_false",
            "bipartite", "difficult_skipped", "normalization_full", "image_without_gt",
            "loss_weight", "agnostic_no_background", "prior_of_two_items"} <= names


def test_golden_sanity_the_cases_are_not_trivial() -> None:
    """A check of the goldens alone (test_matches_the_fork_forward_and_backward runs
    caffe_fx on each): each golden has matches and a nonzero loss (but no_gt_at_all), and mining picked a
    strict subset of conf rows where it runs: the goldens exercise the matching."""
    for path in CASES:
        rec = _load(path)
        if path.stem in ("no_gt_at_all", "hard_example_nms_default_top_k"):
            assert float(rec["data/loss"]) == 0.0
            continue
        assert float(rec["data/loss"]) > 0, path.stem
        assert np.abs(rec["diff/loc"]).max() > 0, path.stem
    rec = _load(GOLDEN / "ssd_max_negative.npz")
    rows = np.abs(rec["diff/conf"]).reshape(2, -1, 4).max(2) > 0
    assert 0 < rows.sum() < rows.size


def test_nms_param_without_top_k_mines_nothing() -> None:
    """nms_param's top_k defaults to 0 and the mining's ApplyNMS keeps the top 0, so
    HARD_EXAMPLE selects nothing: no positive is kept (no loc diff) and no conf row."""
    rec = _load(GOLDEN / "hard_example_nms_default_top_k.npz")
    assert float(rec["data/loss"]) == 0.0
    assert not rec["diff/loc"].any() and not rec["diff/conf"].any()
    loss, inputs = _run(rec)
    assert float(loss) == 0.0 and not inputs["conf"].grad.any()


def test_an_image_without_ground_truth_gets_no_mined_negatives() -> None:
    """The fork mines per label of an image's matches, and an image without ground truth
    has none: under MAX_NEGATIVE its confidences get no diff at all (image 1 here)."""
    rec = _load(GOLDEN / "image_without_gt.npz")
    assert 1 not in rec["input/label"].reshape(-1, 8)[:, 0]
    _, inputs = _run(rec)
    for conf in (rec["diff/conf"], inputs["conf"].grad.numpy()):
        rows = np.abs(conf).reshape(3, -1, 4).max(2) > 0
        assert rows[0].any() and not rows[1].any() and rows[2].any()

def test_variance_in_target_backward_is_the_forks_not_autograds() -> None:
    """With encode_variance_in_target the fork divides prediction and target by the
    variance but copies the diff back without the 1 / variance: autograd differs."""
    rec = _load(GOLDEN / "corner_variance_in_target_bp_inside.npz")
    _, inputs = _run(rec)
    _close(inputs["loc"].grad.numpy(), rec["diff/loc"], "Caffe's backward")
    prior = rec["input/prior"].reshape(2, -1, 4)
    var = np.tile(prior[1], (2, 1)).reshape(rec["diff/loc"].shape)
    assert relative_error(rec["diff/loc"] / var, rec["diff/loc"]) > 1


def test_an_ssd_training_head_matches_the_fork() -> None:
    """A whole net at 1e-4: convolutions, Permute, Flatten, Concat, PriorBox and
    MultiBoxLoss; every top, the image's diff and every parameter's diff."""
    rec = _load(GOLDEN / "net_ssd_train_head.npz")
    weights: dict[str, list[np.ndarray]] = {}
    for key in sorted(k for k in rec if k.startswith("param/")):
        weights.setdefault(key.split("/")[1], []).append(rec[key])
    tops = [k[len("data/"):] for k in rec if k.startswith("data/")]
    gm = caffe_fx.compile(str(rec["prototxt"]), weights=weights, outputs=tops)
    data = torch.from_numpy(rec["input/data"].copy()).requires_grad_(True)
    out = gm(data=data, label=torch.from_numpy(rec["input/label"]))
    for top in tops:
        _close(out[top].detach().numpy(), rec[f"data/{top}"], f"top {top}", 1e-4)
    out["mbox_loss"].backward()
    _close(data.grad.numpy(), rec["diff/data"], "diff of data", 1e-4)
    params = dict(gm.named_parameters())
    specs = gm.meta["caffe"].param_specs
    pdiffs = {f"pdiff/{spec.layer}/{spec.blob_index}": params[name].grad
              for name, spec in specs.items()}
    assert set(pdiffs) == {k for k in rec if k.startswith("pdiff/")}
    for key, grad in pdiffs.items():
        _close(grad.numpy(), rec[key], key, 1e-4)

# ------------------------------------------------------------------------------ errors

def _net(params: str, *, num_classes: int = 3, loc: int = 8, conf: int | None = None,
         extra: str = "") -> str:
    conf = 2 * num_classes if conf is None else conf
    return (f'input: "loc" input_shape {{ dim: 2 dim: {loc} }}\n'
            f'input: "conf" input_shape {{ dim: 2 dim: {conf} }}\n'
            'input: "prior" input_shape { dim: 1 dim: 2 dim: 8 }\n'
            'input: "label" input_shape { dim: 1 dim: 1 dim: 1 dim: 8 }\n'
            'layer { name: "mbox" type: "MultiBoxLoss" bottom: "loc" bottom: "conf" '
            f'bottom: "prior" bottom: "label" top: "loss" {extra} '
            f'multibox_loss_param {{ {params} }} }}\n')


@pytest.mark.parametrize("params, kwargs, match", [
    ("", {}, r"num_classes = unset is not supported; supported: num_classes >= 1"),
    ("num_classes: 0", {"num_classes": 0, "conf": 2},
     r"num_classes = 0 is not supported; supported: num_classes >= 1"),
    ("num_classes: 3 share_location: false", {"loc": 24},
     r"share_location = False is not supported; supported: share_location: true with "
     r"mining_type = MAX_NEGATIVE"),
    ("num_classes: 3 do_neg_mining: false", {}, r"do_neg_mining = False is not supported"),
    ("num_classes: 3 background_label_id: 3", {},
     r"background_label_id = 3 is not supported; supported: 0 to 2 for conf_loss_type SOFTMAX"),
    ("num_classes: 3 map_object_to_agnostic: true", {},
     r"num_classes = 3 is not supported; supported: 2 with map_object_to_agnostic"),
    ("num_classes: 3 mining_type: HARD_EXAMPLE sample_size: 0", {},
     r"sample_size = 0 is not supported; supported: sample_size > 0"),
    ("num_classes: 3 conf_loss_type: LOGISTIC background_label_id: 5", {},
     r"background_label_id = 5 is not supported; supported: below num_classes = 3 with "
     r"mining_type = MAX_NEGATIVE"),
    ("num_classes: 3 background_label_id: 4294967295", {},
     r"background_label_id = -1 is not supported; supported: 0 to 2 for conf_loss_type "
     r"SOFTMAX"),
    ("num_classes: 2 conf_loss_type: LOGISTIC mining_type: NONE map_object_to_agnostic: true "
     "background_label_id: 4294967295", {},
     r"num_classes = 2 is not supported; supported: 1 with map_object_to_agnostic and "
     r"background_label_id = -1"),
], ids=["no_num_classes", "zero_classes", "mining_without_share_location", "do_neg_mining",
        "background_out_of_range", "agnostic_classes", "sample_size",
        "logistic_mining_background_out_of_range", "uint32_background_wraps_to_minus_1",
        "agnostic_without_background_is_one_class"])
def test_unsupported_values_are_refused(params: str, kwargs: dict, match: str) -> None:
    with pytest.raises(UnsupportedFieldError, match=r"layer 'mbox' \(MultiBoxLoss\): .*" + match):
        caffe_fx.compile(_net(params, **kwargs))


@pytest.mark.parametrize("kwargs, match", [
    ({"loc": 12}, r"loc of shape \[2, 12\] for 2 priors needs 8 values per item \(priors "
                  r"x 1 location classes x 4\)"),
    ({"conf": 5}, r"conf of shape \[2, 5\] for 2 priors needs 6 values per item \(priors "
                  r"x 3 classes\)"),
])
def test_shapes_are_checked(kwargs: dict, match: str) -> None:
    with pytest.raises(ShapeError, match=r"layer 'mbox' \(MultiBoxLoss\).*" + match):
        caffe_fx.compile(_net("num_classes: 3", **kwargs))


def _small_inputs(label_row: list[float]) -> dict[str, torch.Tensor]:
    prior = torch.tensor([[0.1, 0.1, 0.5, 0.5, 0.4, 0.4, 0.9, 0.9],
                          [0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2]]).reshape(1, 2, 8)
    return {"loc": torch.zeros(2, 8), "conf": torch.zeros(2, 6), "prior": prior,
            "label": torch.tensor(label_row).reshape(1, 1, 1, 8)}


@pytest.mark.parametrize("row, match", [
    ([0, 0, 0, 0.1, 0.1, 0.5, 0.5, 0], r"has the background label 0"),
    ([0, 7, 0, 0.1, 0.1, 0.5, 0.5, 0], r"label 7 is not a class of num_classes = 3"),
    ([0, 1, 0, 0.5, 0.1, 0.5, 0.5, 0], r"CENTER_SIZE needs ground-truth boxes of positive"),
], ids=["background_label", "label_out_of_range", "empty_box"])
def test_bad_ground_truth_is_an_input_error(row: list[float], match: str) -> None:
    gm = caffe_fx.compile(_net("num_classes: 3 code_type: CENTER_SIZE"))
    with pytest.raises(InputError, match=r"layer 'mbox' \(MultiBoxLoss\): .*" + match):
        gm(**_small_inputs(row))


def test_export_is_refused_with_a_clear_error() -> None:
    gm = caffe_fx.compile(_net("num_classes: 3"))
    inputs = _small_inputs([0, 1, 0, 0.1, 0.1, 0.5, 0.5, 0])
    assert float(gm(**inputs)["loss"]) > 0
    with pytest.raises(ExportError, match=r"layer 'mbox' \(MultiBoxLoss\): its matching and "
                       r"hard-negative mining depend on the data.*cannot be exported"):
        torch.export.export(gm, (), inputs)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_is_refused_naming_the_layer() -> None:
    gm = caffe_fx.compile(_net("num_classes: 3"))
    with pytest.raises(ExportError, match=r"layer 'mbox' \(MultiBoxLoss\) cannot be scripted "
                       r"with TorchScript: its matching and hard-negative mining depend on "
                       r"the data.*outputs=\[its bottoms\]"):
        torch.jit.script(gm)
    inputs = _small_inputs([0, 1, 0, 0.1, 0.1, 0.5, 0.5, 0])
    assert float(gm(**inputs)["loss"]) > 0  # the refusal left the GraphModule as it was


def test_torch_compile_runs_it_eagerly_between_graphs() -> None:
    rec = _load(GOLDEN / "hard_example_nms.npz")
    gm = torch.compile(caffe_fx.compile(str(rec["prototxt"]), outputs=["loss"]),
                       backend="aot_eager")
    inputs = {b: torch.from_numpy(rec[f"input/{b}"].copy()).requires_grad_(b in ("loc", "conf"))
              for b in BOTTOMS}
    loss = gm(**inputs)["loss"]
    loss.backward()
    _close(loss.detach().numpy(), rec["data/loss"], "compiled loss")
    _close(inputs["conf"].grad.numpy(), rec["diff/conf"], "compiled diff of conf")


# ------------------------------------------------------------- SSD's published train nets

TRAIN_NETS = {  # prototxt under ../shared/models, image side, classes, priors
    "mobilenet_ssd": ("chuanqi305+MobileNet-SSD/train.prototxt", 300, 21, 1917),
    "vgg_ssd300": ("Shinung+gpu-rest-engine/models/VGGNet/VOC0712/SSD_300x300/train.prototxt",
                   300, 21, 8732),
    "yufacedetectnet_v1": ("ShiqiYu+libfacedetection/models/caffe/"
                           "yufacedetectnet-open-v1.train.prototxt", 320, 2, None),
}


@pytest.mark.published
@pytest.mark.parametrize("key", sorted(TRAIN_NETS))
def test_published_ssd_train_nets_run_forward_and_backward(key: str, shared_models: Path) -> None:
    """The TRAIN phase of SSD's own nets (AnnotatedData as inputs: data (N, 3, H, W) and
    label (1, 1, N_gt, 8)) compiles; a forward gives a positive loss and a backward a
    finite diff for every parameter.  Opt-in (CAFFE_FX_PUBLISHED=1): 5 to 20 s a net."""
    path, side, classes, priors = TRAIN_NETS[key]
    gt = torch.tensor([[0, 1, 0, 0.10, 0.10, 0.45, 0.50, 0],
                       [0, classes - 1, 1, 0.50, 0.40, 0.90, 0.95, 0],
                       [1, 1, 0, 0.30, 0.20, 0.70, 0.80, 0],
                       [1, 1, 1, 0.05, 0.60, 0.30, 0.90, 1]]).reshape(1, 1, 4, 8)
    gm = caffe_fx.compile(shared_models / path, phase="train",
                          input_shapes={"data": (2, 3, side, side), "label": tuple(gt.shape)})
    mbox = next(n for n in gm.graph.nodes if n.meta.get("caffe_layer") == "mbox_loss")
    prior_shape = gm.meta["caffe"].blob_shapes["mbox_priorbox"]
    if priors is not None:
        assert prior_shape == (1, 2, priors * 4)
    assert mbox.kwargs["num_classes"] == classes
    g = torch.Generator().manual_seed(0)
    loss = gm(data=torch.randn(2, 3, side, side, generator=g) * 50, label=gt)["mbox_loss"]
    assert loss.dim() == 0 and float(loss.detach()) > 0
    loss.backward()
    grads = {name: p.grad for name, p in gm.named_parameters()}
    assert all(v is not None and torch.isfinite(v).all() for v in grads.values())
    # A head whose priors match nothing (nor are mined) gets none; the heads together and
    # the first layer do.
    for head in ("mbox_loc", "mbox_conf"):
        heads = [v for k, v in grads.items() if head in k and k.endswith("weight")]
        assert heads and any(v.abs().max() > 0 for v in heads), head
    first = next(iter(grads.values()))
    assert first.abs().max() > 0
