"""SSD's DetectionOutput and DetectionEvaluate against weiliu89/caffe (branch ssd), run for
real: tests/golden/ssd_detection/*.npz (tools/make_ssd_detection_goldens.py,
CAFFE_ORACLE_FORK=ssd) hold the fork's tops for every parameter that changes them, a
DetectionOutput -> DetectionEvaluate chain and SSD's output head (Permute, Flatten,
Reshape -> Softmax -> Flatten, PriorBox, Concat, DetectionOutput).  compile() runs each
case's prototxt; the rows must be the fork's, in its order.

With CAFFE_FX_SSD_FULL=1 (and the oracle), the fork runs live: one golden regenerated, and
MobileNet-SSD-sized inputs (thousands of boxes kept) compared row for row.

Also: the data-dependent top (Net::Init's shape at compile time, the real count when run),
its refusal by torch.export and of a backward, AnnotatedData's label as an input of any row
count, and the fields and shapes the fork CHECKs, as caffe_fx errors."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import (DataSourceError, ExportError, InputError, ShapeError,
                             UnsupportedFieldError)
from caffe_fx.ops import bbox_util as bu
from tests.golden.harness import relative_error

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ssd_detection"
CASES = sorted(GOLDEN.glob("*.npz"))


def _load(name: str | Path) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"{name}.npz" if isinstance(name, str) else name) as f:
        return dict(f)


def _inputs(rec: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k[len("input/"):]: torch.from_numpy(v) for k, v in rec.items()
            if k.startswith("input/")}


def _prototxt(rec: dict[str, np.ndarray]) -> str:
    """The case's prototxt, its name_size_file read from this checkout's golden folder."""
    return re.sub(r'name_size_file: "[^"]*"', f'name_size_file: "{GOLDEN / "name_size.txt"}"',
                  str(rec["prototxt"]))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_the_fork(path: Path) -> None:
    rec = _load(path)
    tol = 1e-4 if path.stem.startswith("net_") else 1e-5  # a whole net, or one layer
    tops = [k[len("data/"):] for k in rec if k.startswith("data/")]
    gm = caffe_fx.compile(_prototxt(rec), outputs=tops)
    out = gm(**_inputs(rec))
    for top in tops:
        ours, caffe = out[top].numpy(), rec[f"data/{top}"]
        assert ours.shape == caffe.shape, f"{path.stem}: top {top} {ours.shape}, {caffe.shape}"
        err = relative_error(ours, caffe)
        assert err <= tol, f"{path.stem}: top {top} differs from the fork by {err:.3g}"


def test_goldens_cover_the_cases() -> None:
    names = {p.stem for p in CASES}
    assert len(names) == 27
    assert {"do_center_size", "do_no_share_location", "do_eta_adaptive", "do_nothing_kept",
            "de_difficult_skipped", "de_name_size_fit_large_pad", "net_detect_and_evaluate",
            "net_ssd_output_head"} <= names


def test_golden_sanity_the_cases_show_what_they_are_named_after() -> None:
    """A check of the goldens alone (test_matches_the_fork runs caffe_fx on each): the
    fork's rows show each case's point: fake rows when nothing is kept, keep_top_k
    cutting across labels, an image without detections, detections of the no-gt image
    and difficult matches counting neither way."""
    det = _load("do_nothing_kept")["data/det"].reshape(-1, 7)
    np.testing.assert_array_equal(det, [[i, -1, -1, -1, -1, -1, -1] for i in range(3)])
    det = _load("do_keep_top_k_across_classes")["data/det"].reshape(-1, 7)
    assert det.shape[0] == 9 and (np.bincount(det[:, 0].astype(int)) == 3).all()
    assert all(np.all(np.diff(det[det[:, 0] == i, 1]) >= 0) for i in range(3))  # by label
    det = _load("do_one_image_empty")["data/det"].reshape(-1, 7)
    assert set(det[:, 0]) == {0, 2}
    evaluated = _load("de_difficult_evaluated")["data/eval"].reshape(-1, 5)
    skipped = _load("de_difficult_skipped")["data/eval"].reshape(-1, 5)
    assert (evaluated[:3, 2] > skipped[:3, 2]).any()  # fewer positives without difficult
    assert ((skipped[3:, 3] == 0) & (skipped[3:, 4] == 0)).any()  # matched a difficult gt
    assert (evaluated[3:, 3] + evaluated[3:, 4] == 1).all()


def test_detection_evaluate_keeps_the_input_dtype() -> None:
    """A double net (Caffe's Dtype double) gets a double top, of the float golden's values:
    the fork holds boxes and scores in NormalizedBBox's float fields either way."""
    rec = _load("de_difficult_evaluated")
    gm = caffe_fx.compile(_prototxt(rec), outputs=["eval"])
    out = gm(**{k: v.double() for k, v in _inputs(rec).items()})["eval"]
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), rec["data/eval"])


# ------------------------------------------------- the data-dependent top, export, backward

def _head() -> tuple[caffe_fx.GraphModule, dict[str, torch.Tensor], np.ndarray]:
    rec = _load("do_center_size")
    return caffe_fx.compile(str(rec["prototxt"])), _inputs(rec), rec["data/det"]


def test_compile_time_shape_is_net_inits_and_the_run_gives_the_count() -> None:
    gm, inputs, det = _head()
    assert gm.meta["caffe"].blob_shapes["det"] == (1, 1, 1, 7)  # Reshape's fake row
    assert det.shape[2] > 1
    assert gm(**inputs)["det"].shape == det.shape


def test_export_is_refused_naming_the_layer() -> None:
    gm, inputs, _ = _head()
    with pytest.raises(ExportError, match=r"layer 'do_center_size' \(DetectionOutput\).*"
                                          r"data-dependent.*outputs="):
        torch.export.export(gm, (), inputs)


def test_torchscript_scripts_the_net_and_refuses_to_run_the_layer() -> None:
    gm, inputs, _ = _head()
    scripted = torch.jit.script(gm)
    with pytest.raises(torch.jit.Error, match=r"layer 'do_center_size' \(DetectionOutput\)"
                                              r".*only eagerly"):
        scripted(**inputs)


def test_backward_is_refused_as_the_forks_not_implemented() -> None:
    gm, inputs, det = _head()
    inputs = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    out = gm(**inputs)["det"]
    np.testing.assert_array_equal(out.detach().numpy(), det)
    with pytest.raises(UnsupportedFieldError, match="do_center_size.*has no backward"):
        out.sum().backward()


# ---------------------------------------------------------------- AnnotatedData

def test_annotated_data_label_is_an_input_of_any_row_count() -> None:
    """The chain's gt from an AnnotatedData layer instead of an input: its label is given
    as (1, 1, N_gt, 8) and runs at other counts, as each batch's boxes vary."""
    rec = _load("net_detect_and_evaluate")
    text = str(rec["prototxt"]).replace(
        'input: "gt"\ninput_shape { dim: 1 dim: 1 dim: 6 dim: 8 }\n', "")
    assert text != str(rec["prototxt"])
    at = text.index("layer {")  # the data layer comes first
    text = (text[:at] + 'layer { name: "data" type: "AnnotatedData" top: "data" top: "gt"\n'
            '  data_param { source: "train_lmdb" batch_size: 2 backend: LMDB }\n'
            '  annotated_data_param { label_map_file: "labelmap.prototxt" } }\n'
            'layer { name: "silence" type: "Silence" bottom: "data" }\n' + text[at:])
    with pytest.raises(InputError, match=r"'gt': \(1, 1, N_gt, 8\)"):
        caffe_fx.compile(text, input_shapes={"data": (2, 3, 4, 4)}, outputs=["eval"])
    gm = caffe_fx.compile(text, input_shapes={"data": (2, 3, 4, 4), "gt": (1, 1, 1, 8)},
                          outputs=["eval"])
    inputs = _inputs(rec)
    out = gm(data=torch.zeros(2, 3, 4, 4), **inputs)["eval"]
    np.testing.assert_array_equal(out.numpy(), rec["data/eval"])
    fewer = gm(data=torch.zeros(2, 3, 4, 4), loc=inputs["loc"], conf=inputs["conf"],
               prior=inputs["prior"], gt=inputs["gt"][:, :, :2])["eval"]
    assert fewer.shape[2] == out.shape[2]  # the rows follow the detections, not the gt
    assert fewer[0, 0, :3, 2].sum() < out[0, 0, :3, 2].sum()


# ---------------------------------------------------------------- refused fields, shapes

_DO = ('input: "loc" input_shape {{ dim: 1 dim: {loc} }}\n'
       'input: "conf" input_shape {{ dim: 1 dim: 12 }}\n'
       'input: "prior" input_shape {{ dim: 1 dim: 2 dim: 16 }}\n'
       'layer {{ name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
       'bottom: "prior" top: "det" detection_output_param {{ {p} }} }}\n')


@pytest.mark.parametrize("params, loc, error, message", [
    ("", 16, UnsupportedFieldError, r"'det'.*num_classes = unset"),
    ("num_classes: 3 nms_param { eta: 0 }", 16, UnsupportedFieldError, r"eta = 0.0.*0 < eta"),
    ("num_classes: 3 nms_param { nms_threshold: -0.1 }", 16, UnsupportedFieldError,
     r"nms_threshold = -0.1.*>= 0"),
    ("num_classes: 3 background_label_id: -1", 16, UnsupportedFieldError,
     r"background_label_id = -1.*share_location"),
    ('num_classes: 3 save_output_param { output_directory: "out" }', 16,
     UnsupportedFieldError, r"output_directory = 'out'.*writes no result files"),
    ("num_classes: 3 visualize: true", 16, UnsupportedFieldError, r"visualize = True"),
    ("num_classes: 3", 20, ShapeError, r"bottom 0 of shape \[1, 20\].*\(N, 16\)"),
    ("num_classes: 3 share_location: false", 16, ShapeError, r"\(N, 48\).*3 location"),
    ("num_classes: 4", 16, ShapeError, r"bottom 1 of shape \[1, 12\].*\(N, 16\)"),
], ids=["no_num_classes", "eta_0", "nms_negative", "shared_no_background", "save_dir",
        "visualize", "loc_size", "loc_per_class", "conf_size"])
def test_detection_output_refuses(params: str, loc: int, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        caffe_fx.compile(_DO.format(loc=loc, p=params))


def test_detection_output_accepts_a_save_output_param_that_saves_nothing() -> None:
    """SSD's deploy nets name a label map and a name-size file without an output folder:
    the fork saves nothing then, and the top is the same."""
    gm = caffe_fx.compile(_DO.format(loc=16, p='num_classes: 3 save_output_param { '
                                             'label_map_file: "labelmap.prototxt" '
                                             'name_size_file: "sizes.txt" }'))
    assert gm.meta["caffe"].blob_shapes["det"] == (1, 1, 1, 7)


def test_center_size_refuses_a_prior_of_no_width_when_run() -> None:
    gm = caffe_fx.compile(_DO.format(loc=16, p="num_classes: 3 code_type: CENTER_SIZE"))
    prior = torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.2, 0.2, 0.2, 0.5],
                          [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.9, 0.7]]).reshape(-1)
    prior = torch.stack([prior, torch.full([16], 0.1)]).unsqueeze(0)
    with pytest.raises(InputError, match=r"'det'.*prior 1 .*CENTER_SIZE"):
        gm(loc=torch.zeros(1, 16), conf=torch.full([1, 12], 1 / 3), prior=prior)


_DE = ('input: "det" input_shape {{ dim: 1 dim: 1 dim: 2 dim: {w} }}\n'
       'input: "gt" input_shape {{ dim: 1 dim: 1 dim: 3 dim: 8 }}\n'
       'layer {{ name: "ev" type: "DetectionEvaluate" bottom: "det" bottom: "gt" top: "out" '
       'detection_evaluate_param {{ {p} }} }}\n')


@pytest.mark.parametrize("params, width, error, message", [
    ("", 7, UnsupportedFieldError, r"'ev'.*num_classes = unset"),
    ("num_classes: 3 overlap_threshold: 0", 7, UnsupportedFieldError,
     r"overlap_threshold = 0.0.*> 0"),
    ('num_classes: 3 name_size_file: "/nonexistent/sizes.txt"', 7, DataSourceError,
     r"'ev'.*name_size_file = '/nonexistent/sizes.txt' cannot be read.*Failed to open"),
    (f'num_classes: 3 name_size_file: "{GOLDEN / "name_size.txt"}" resize_param {{ '
     'resize_mode: WARP }', 7, UnsupportedFieldError, r"resize_param.height/width = 0 x 0"),
    ("num_classes: 3", 6, ShapeError, r"bottom 0 \(detections\) of shape \[1, 1, 2, 6\]"),
    ("num_classes: 0", 7, UnsupportedFieldError,
     r"'ev'.*num_classes = 0 is not supported; supported: at least 1 with "
     r"background_label_id = 0 .*0 only with background_label_id -1"),
], ids=["no_num_classes", "overlap_0", "name_size_file_missing", "resize_no_size",
        "det_width", "no_classes"])
def test_detection_evaluate_refuses(params: str, width: int, error: type, message: str
                                    ) -> None:
    with pytest.raises(error, match=message):
        caffe_fx.compile(_DE.format(w=width, p=params))


def test_detection_evaluate_of_no_classes_without_background_compiles() -> None:
    gm = caffe_fx.compile(_DE.format(w=7, p="num_classes: 0 background_label_id: 4294967295"))
    assert gm.meta["caffe"].blob_shapes["out"] == (1, 1, 2, 5)


def test_detection_evaluate_refuses_background_ground_truth_when_run() -> None:
    gm = caffe_fx.compile(_DE.format(w=7, p="num_classes: 3"))
    gt = torch.tensor([[0, 1, 0, 0.1, 0.1, 0.5, 0.5, 0], [0, 0, 1, 0.2, 0.2, 0.4, 0.4, 0],
                       [1, 2, 0, 0.1, 0.1, 0.5, 0.5, 0]]).reshape(1, 1, 3, 8)
    det = torch.tensor([[0, 1, 0.9, 0.1, 0.1, 0.5, 0.5]] * 2).reshape(1, 1, 2, 7)
    with pytest.raises(InputError, match=r"'ev'.*ground truth row 1 has the background"):
        gm(det=det, gt=gt)


def test_name_size_images_are_counted_across_forwards(tmp_path: Path) -> None:
    """The fork's count_: each image with detections takes the next size, from the first
    again after the last, across forwards, until reset_state().  One detection overlapping
    its gt by 0.143 normalized is a true positive at threshold 0.25 only in the 10 x 10
    image (pixels [1, 3] and [2, 4]: 4 / (9 + 9 - 4) = 0.286), not in the 1000 x 1000 one
    (10201 / 70601 = 0.144)."""
    sizes = tmp_path / "sizes.txt"
    sizes.write_text("small 10 10\nlarge 1000 1000\n")
    gm = caffe_fx.compile(_DE.format(w=7, p=f'num_classes: 2 overlap_threshold: 0.25 '
                                            f'name_size_file: "{sizes}"'))
    det = torch.tensor([[0, 1, 0.9, 0.2, 0.2, 0.4, 0.4]] * 2).reshape(1, 1, 2, 7)
    gt = torch.tensor([[0, 1, 0, 0.1, 0.1, 0.3, 0.3, 0]] * 3).reshape(1, 1, 3, 8)
    tp = [gm(det=det, gt=gt)["out"][0, 0, 1, 3].item() for _ in range(3)]
    assert tp == [1.0, 0.0, 1.0]
    module = next(m for m in gm.modules() if hasattr(m, "reset_state"))
    assert module.count == 1
    module.reset_state()
    assert gm(det=det, gt=gt)["out"][0, 0, 1, 3].item() == 1.0
    plain = caffe_fx.compile(_DE.format(w=7, p="num_classes: 2 overlap_threshold: 0.25"))
    assert plain(det=det, gt=gt)["out"][0, 0, 1, 3].item() == 0.0


def test_name_size_changes_the_matches() -> None:
    """Pixel boxes (+1 sizes, the resize undone) give other true positives than normalized
    ones on the same rows."""
    plain = _load("de_small_boxes_normalized")["data/eval"]
    pixels = _load("de_name_size")["data/eval"]
    scaled = _load("de_name_size_fit_small_scaled")["data/eval"]
    assert not np.array_equal(plain, pixels) and not np.array_equal(pixels, scaled)


# ---------------------------------------------------------------- bbox_util

def test_jaccard_overlap_follows_the_forks_bbox_size_rules() -> None:
    """Apart or touching boxes overlap 0; an inverted box has size 0; unnormalized, apart
    boxes still intersect in 1 x 1 (IntersectBBox's zeros plus one) over normalized
    sizes, as JaccardOverlap(..., false) computes it."""
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    b = torch.tensor([[0.25, 0.25, 0.75, 0.75], [0.5, 0.0, 1.0, 0.5],
                      [0.6, 0.6, 0.9, 0.9], [0.4, 0.4, 0.1, 0.1]])
    got = bu.jaccard_overlap(a, b)[0]
    assert got[0] == pytest.approx(0.0625 / (0.25 + 0.25 - 0.0625))
    assert got[1] == 0 and got[2] == 0 and got[3] == 0
    assert bu.bbox_size(b)[3] == 0
    apart = bu.jaccard_overlap(a, b[2:3], normalized=False)[0, 0]
    assert apart == pytest.approx(1 / (0.25 + 0.09 - 1))


def test_nms_eta_lowers_the_threshold_after_each_keep() -> None:
    """Three boxes overlapping the first by 0.6: with eta 1 and threshold 0.7 all stay;
    with eta 0.8 the threshold is 0.56 after the first keep, so the others go."""
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.6],
                          [0.0, 0.4, 1.0, 1.0], [0.4, 0.0, 1.0, 1.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert bu.nms_fast(boxes, scores, 0.0, 0.7).tolist() == [0, 1, 2, 3]
    assert bu.nms_fast(boxes, scores, 0.0, 0.7, eta=0.8).tolist() == [0]
    assert bu.nms_fast(boxes, scores, 0.65, 0.7, top_k=1).tolist() == [0]


@pytest.mark.parametrize("code_type", [bu.CORNER, bu.CENTER_SIZE, bu.CORNER_SIZE])
@pytest.mark.parametrize("in_target", [False, True])
def test_encode_inverts_decode(code_type: int, in_target: bool) -> None:
    g = torch.Generator().manual_seed(code_type)
    xy = torch.rand(6, 2, generator=g) * 0.5
    priors = torch.cat([xy, xy + 0.2 + torch.rand(6, 2, generator=g) * 0.3], 1)
    variances = torch.tensor([0.1, 0.1, 0.2, 0.2]).expand(6, 4)
    loc = torch.randn(2, 6, 4, generator=g) * 0.5
    boxes = bu.decode_boxes(loc, priors, variances, code_type, in_target)
    again = bu.encode_boxes(boxes, priors, variances, code_type, in_target)
    torch.testing.assert_close(again, loc, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- the fork, live

_FULL = pytest.mark.skipif(os.environ.get("CAFFE_FX_SSD_FULL") != "1",
                           reason="runs the fork live (a few seconds each; the CI has no time "
                                  "left): set CAFFE_FX_SSD_FULL=1")


@pytest.mark.oracle
@_FULL
def test_goldens_are_reproduced_by_the_fork(tmp_path: Path) -> None:
    """The generator still gives the committed numbers (needs root and the ssd overlay)."""
    from tests.nets.oracle import oracle_unavailable
    why = oracle_unavailable()
    if why:
        pytest.skip(why)
    from tools import make_ssd_detection_goldens as M
    M.make_fork_golden(next(c for c in M.CASES if c.name == "do_eta_adaptive"), tmp_path, "ssd")
    new, old = _load(tmp_path / "do_eta_adaptive.npz"), _load(GOLDEN / "do_eta_adaptive.npz")
    np.testing.assert_array_equal(new["data/det"], old["data/det"])


@pytest.mark.oracle
@_FULL
@pytest.mark.parametrize("evaluate", [
    "evaluate_difficult_gt: false",
    'evaluate_difficult_gt: false name_size_file: "{sizes}" resize_param { resize_mode: '
    "FIT_LARGE_SIZE_AND_PAD height: 300 width: 300 }"], ids=["normalized", "name_size"])
def test_ssd_sized_detection_and_evaluation_equal_the_forks(tmp_path: Path, evaluate: str
                                                            ) -> None:
    """MobileNet-SSD's size (1920 priors, 21 classes, 3 images, no top_k, threshold 0.01:
    thousands of boxes kept) through DetectionOutput into DetectionEvaluate, live."""
    from tests.nets.oracle import oracle_fork, oracle_unavailable, run_oracle
    from tools import make_ssd_detection_goldens as M
    why = oracle_unavailable()
    if why:
        pytest.skip(why)
    r = np.random.RandomState(2)
    n, priors, classes = 3, 480 * 4, 21
    inputs = {"loc": M.offsets(n, priors, 1, 0.7)(r),
              "conf": M.probabilities(n, priors, classes, sharp=3.0)(r),
              "prior": M.priors(480)(r), "gt": M.chain_gt(r)}
    (tmp_path / "sizes.txt").write_text("a 375 500\nb 500 333\n")
    head = "".join(f'input: "{k}"\ninput_shape {{ {" ".join(f"dim: {d}" for d in v.shape)} }}\n'
                   for k, v in inputs.items())
    text = head + (
        'layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
        'bottom: "prior" top: "det" detection_output_param { num_classes: 21 nms_param { '
        "nms_threshold: 0.45 } code_type: CENTER_SIZE confidence_threshold: 0.01 } }\n"
        'layer { name: "ev" type: "DetectionEvaluate" bottom: "det" bottom: "gt" top: "ev" '
        f"detection_evaluate_param {{ num_classes: 21 "
        f"{evaluate.replace('{sizes}', str(tmp_path / 'sizes.txt'))} }} }}\n")
    net = tmp_path / "net.prototxt"
    net.write_text(text)
    with oracle_fork("ssd"):
        got, _ = run_oracle(net, inputs, workdir=tmp_path)
    out = caffe_fx.compile(text, outputs=["det", "ev"])(
        **{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert got["data/det"].shape[2] > 1000
    assert relative_error(out["det"].numpy(), got["data/det"]) <= 1e-5
    np.testing.assert_array_equal(out["ev"].numpy(), got["data/ev"])
