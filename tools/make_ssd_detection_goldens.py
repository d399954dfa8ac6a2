"""Goldens for SSD's DetectionOutput and DetectionEvaluate from weiliu89/caffe (branch
ssd), run for real.

    python tools/make_ssd_detection_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle with its `ssd` overlay (CAFFE_ORACLE_FORK=ssd).  Each
case is one layer (or a small net) fed from legacy `input:` fields with seeded inputs,
forward only (ForkCase.backward False: neither layer has a backward, and force_backward
would abort the fork).  Inputs are what the layers see in SSD: class probabilities (a
softmax over each prior's classes), priors in [0, 1] as PriorBox makes them (several sizes
around each location, so that NMS has overlaps to suppress) with their variances, small
encoded offsets; detections and ground truth rows near each other for DetectionEvaluate.
Writes tests/golden/ssd_detection/<case>.npz (`prototxt`, `phase`, `layer`,
`input/<blob>`, `data/<blob>`, `param/<layer>/<i>` for the nets).
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._oracle_goldens import ForkCase, Gen, generate, make_fork_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "ssd_detection"
make = partial(make_fork_golden, folder=GOLDEN, fork="ssd")


def Case(name: str, layer: str, body: str, inputs: dict, net: str = "") -> ForkCase:
    return ForkCase(name, layer, body, inputs, net=net, backward=False)


# ------------------------------------------------------------------------ inputs

def priors(locations: int, variance: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2)) -> Gen:
    """(1, 2, P * 4), P = 4 per location: a square, a larger square and two 2:1 boxes
    around random centres in [0, 1], clipped to [0, 1] as PriorBox's clip does."""
    def gen(r: np.random.RandomState) -> np.ndarray:
        boxes = []
        for _ in range(locations):
            cx, cy = r.uniform(0.15, 0.85, 2)
            s = r.uniform(0.15, 0.35)
            for w, h in ((s, s), (1.6 * s, 1.6 * s), (1.4 * s, 0.7 * s), (0.7 * s, 1.4 * s)):
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        b = np.clip(np.array(boxes, np.float32), 0, 1).reshape(-1)
        var = np.tile(np.array(variance, np.float32), len(boxes))
        return np.stack([b, var])[None]
    return gen


def offsets(num: int, num_priors: int, num_loc: int, scale: float) -> Gen:
    return lambda r: (r.randn(num, num_priors * num_loc * 4) * scale).astype(np.float32)


def probabilities(num: int, num_priors: int, num_classes: int, sharp: float = 2.0) -> Gen:
    """Softmax over each prior's classes, flattened as SSD's mbox_conf_flatten."""
    def gen(r: np.random.RandomState) -> np.ndarray:
        z = r.randn(num, num_priors, num_classes) * sharp
        e = np.exp(z - z.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).reshape(num, -1).astype(np.float32)
    return gen


def one_image_flat(num: int, num_priors: int, num_classes: int, flat: int) -> Gen:
    """probabilities() with image `flat` near uniform (below any threshold > 1 / C + 0.05)."""
    def gen(r: np.random.RandomState) -> np.ndarray:
        p = probabilities(num, num_priors, num_classes)(r)
        q = probabilities(1, num_priors, num_classes, sharp=0.1)(r)
        p[flat] = q[0]
        return p
    return gen


def _det(loc: int, c: int, n: int, p: int, params: str, bottoms: str = "") -> tuple[str, dict]:
    body = ('bottom: "loc" bottom: "conf" bottom: "prior" ' + bottoms + 'top: "det" '
            f"detection_output_param {{ num_classes: {c} {params} }}")
    return body, {"loc": offsets(n, p * 4, loc, 1.0), "conf": probabilities(n, p * 4, c),
                  "prior": priors(p)}


def det_case(name: str, params: str, *, c: int = 4, n: int = 2, p: int = 6,
             share: bool = True, loc_scale: float = 1.0, extra: dict | None = None,
             bottoms: str = "") -> ForkCase:
    body, inputs = _det(1 if share else c, c, n, p, params, bottoms)
    inputs["loc"] = offsets(n, p * 4, 1 if share else c, loc_scale)
    inputs.update(extra or {})
    return Case(name, "DetectionOutput", body, inputs)


_NMS = "nms_param { nms_threshold: 0.45 top_k: 10 }"
CASES = [
    det_case("do_center_size", f"{_NMS} keep_top_k: 8 confidence_threshold: 0.05 "
             "code_type: CENTER_SIZE"),
    det_case("do_corner_defaults", "confidence_threshold: 0.2", loc_scale=0.3),
    det_case("do_corner_size", f"{_NMS} confidence_threshold: 0.1 code_type: CORNER_SIZE",
             loc_scale=0.5),
    det_case("do_center_variance_in_target", f"{_NMS} confidence_threshold: 0.1 "
             "code_type: CENTER_SIZE variance_encoded_in_target: true", loc_scale=0.15),
    det_case("do_corner_variance_in_target", "confidence_threshold: 0.1 "
             "variance_encoded_in_target: true", loc_scale=0.05),
    det_case("do_no_share_location", f"share_location: false {_NMS} keep_top_k: 6 "
             "confidence_threshold: 0.05 code_type: CENTER_SIZE", c=3, share=False),
    det_case("do_no_share_no_background", "share_location: false background_label_id: -1 "
             "nms_param { nms_threshold: 0.3 } confidence_threshold: 0.15 "
             "code_type: CENTER_SIZE", c=3, share=False),
    det_case("do_background_last", "background_label_id: 3 nms_param { nms_threshold: 0.5 "
             "top_k: 6 } confidence_threshold: 0.1 code_type: CENTER_SIZE"),
    det_case("do_eta_adaptive", "nms_param { nms_threshold: 0.8 top_k: 20 eta: 0.7 } "
             "confidence_threshold: 0.02 code_type: CENTER_SIZE", p=8, loc_scale=0.5),
    det_case("do_keep_top_k_across_classes", f"{_NMS} keep_top_k: 3 "
             "confidence_threshold: 0.01 code_type: CENTER_SIZE", c=5, n=3),
    det_case("do_nms_threshold_zero", "nms_param { nms_threshold: 0 } "
             "confidence_threshold: 0.1 code_type: CENTER_SIZE", loc_scale=0.5),
    det_case("do_no_confidence_threshold", "nms_param { nms_threshold: 0.45 top_k: 3 } "
             "code_type: CENTER_SIZE", c=3),
    det_case("do_nothing_kept", f"{_NMS} confidence_threshold: 0.6 code_type: CENTER_SIZE",
             n=3, extra={"conf": probabilities(3, 24, 4, sharp=0.3)}),
    det_case("do_top_k_zero_keeps_nothing", "nms_param { nms_threshold: 0.45 top_k: 0 } "
             "code_type: CENTER_SIZE"),
    det_case("do_one_image_empty", f"{_NMS} confidence_threshold: 0.6 code_type: CENTER_SIZE",
             n=3, p=3, extra={"conf": one_image_flat(3, 12, 4, flat=1)}),
    det_case("do_image_bottom", f"{_NMS} confidence_threshold: 0.1 code_type: CENTER_SIZE "
             "visualize: false", bottoms='bottom: "data" ',
             extra={"data": lambda r: np.zeros((2, 3, 4, 4), np.float32)}),
]


# ------------------------------------------------------------------- DetectionEvaluate

def eval_inputs(r: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth for images 0, 1 and 3 (labels 1-3, some difficult), detections for
    images 0-2 near the gt (tp), doubled (fp: a second match), off target, of labels the
    image has no gt of, and image 2's fake row [2, -1, ...] of DetectionOutput."""
    gt, det = [], []
    for item in (0, 1, 3):
        for inst in range(3):
            label = int(r.randint(1, 4))
            x, y = r.uniform(0.05, 0.6, 2)
            w, h = r.uniform(0.15, 0.35, 2)
            difficult = float(r.rand() < 0.35)
            gt.append([item, label, inst, x, y, x + w, y + h, difficult])
            if item == 3:
                continue
            for k in range(int(r.randint(1, 4))):  # near it; a second one is a duplicate
                j = r.uniform(-0.08, 0.08, 4) * (1 + k)
                det.append([item, label, r.uniform(0.05, 1.0), x + j[0], y + j[1],
                            x + w + j[2], y + h + j[3]])
        det.append([item, 3, r.uniform(0.05, 1.0), 0.7, 0.7, 0.95, 0.95])  # off target
    det.append([2, -1, -1, -1, -1, -1, -1])
    det.append([2, 2, 0.4, 0.1, 0.1, 0.3, 0.3])  # an image without gt
    det = np.array(det, np.float32)
    det = det[r.permutation(len(det))]  # the layer sorts by score itself
    return det.reshape(1, 1, -1, 7), np.array(gt, np.float32).reshape(1, 1, -1, 8)


def _eval(part: int) -> Gen:
    return lambda r: eval_inputs(np.random.RandomState(7))[part]


def eval_case(name: str, params: str) -> ForkCase:
    return Case(name, "DetectionEvaluate",
                'bottom: "det" bottom: "gt" top: "eval" '
                f"detection_evaluate_param {{ num_classes: 4 {params} }}",
                {"det": _eval(0), "gt": _eval(1)})


CASES += [
    eval_case("de_difficult_evaluated", ""),
    eval_case("de_difficult_skipped", "evaluate_difficult_gt: false"),
    eval_case("de_overlap_0_3", "overlap_threshold: 0.3 evaluate_difficult_gt: false"),
    eval_case("de_overlap_0_7", "overlap_threshold: 0.7"),
]

# name_size_file: the boxes in pixels of each image with detections (the third, image 2,
# wraps to the first size), undoing each resize_param mode; both FIT_LARGE_SIZE_AND_PAD
# branches (image 0 wider than the resize, image 1 taller).
NAME_SIZE = GOLDEN / "name_size.txt"
NAME_SIZE_TEXT = "000001 300 500\n000002 500 375\n"


def sized_inputs(r: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Boxes a few pixels wide, where the pixel sizes' + 1 moves overlaps across the
    threshold, and boxes past the image's edge, which OutputBBox clips; images 0-2 (image 2
    takes the first size again)."""
    gt, det = [], []
    for item in range(3):
        for inst in range(4):
            label = 1 + inst % 3
            w, h = r.uniform(0.004, 0.03, 2)
            x, y = (r.uniform(0.9, 0.99, 2) if inst == 3 else r.uniform(0.05, 0.9, 2))
            gt.append([item, label, inst, x, y, x + w, y + h, float(inst == 2 and item == 1)])
            for k in range(2):
                j = r.uniform(-0.35, 0.35, 4) * np.array([w, h, w, h])
                grow = 0.08 if inst == 3 else 0.0  # past the edge
                det.append([item, label, r.uniform(0.05, 1.0), x + j[0], y + j[1],
                            x + w + j[2] + grow, y + h + j[3] + grow])
    det = np.array(det, np.float32)
    return det[r.permutation(len(det))].reshape(1, 1, -1, 7), \
        np.array(gt, np.float32).reshape(1, 1, -1, 8)


def _sized(part: int) -> Gen:
    return lambda r: sized_inputs(np.random.RandomState(11))[part]


def sized_case(name: str, params: str) -> ForkCase:
    return Case(name, "DetectionEvaluate",
                'bottom: "det" bottom: "gt" top: "eval" detection_evaluate_param { '
                f'num_classes: 4 evaluate_difficult_gt: false name_size_file: "{NAME_SIZE}" '
                f"{params} }}", {"det": _sized(0), "gt": _sized(1)})


CASES += [
    Case("de_small_boxes_normalized", "DetectionEvaluate",
         'bottom: "det" bottom: "gt" top: "eval" detection_evaluate_param { '
         "num_classes: 4 evaluate_difficult_gt: false }", {"det": _sized(0), "gt": _sized(1)}),
    sized_case("de_name_size", ""),
    sized_case("de_name_size_warp", "resize_param { resize_mode: WARP height: 300 width: 300 }"),
    sized_case("de_name_size_fit_large_pad", "resize_param { resize_mode: "
               "FIT_LARGE_SIZE_AND_PAD height: 300 width: 300 }"),
    sized_case("de_name_size_fit_small_scaled", "resize_param { resize_mode: FIT_SMALL_SIZE "
               "height: 300 width: 300 height_scale: 240 width_scale: 320 }"),
]

# DetectionOutput into DetectionEvaluate, as SSD's test nets run them.
CHAIN = """
layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior"
  top: "det" detection_output_param { num_classes: 4 nms_param { nms_threshold: 0.45
  top_k: 10 } keep_top_k: 8 confidence_threshold: 0.05 code_type: CENTER_SIZE } }
layer { name: "eval" type: "DetectionEvaluate" bottom: "det" bottom: "gt" top: "eval"
  detection_evaluate_param { num_classes: 4 evaluate_difficult_gt: false } }
"""


def chain_gt(r: np.random.RandomState) -> np.ndarray:
    rows = []
    for item in range(2):
        for inst in range(3):
            x, y = r.uniform(0.05, 0.55, 2)
            w, h = r.uniform(0.2, 0.4, 2)
            rows.append([item, r.randint(1, 4), inst, x, y, x + w, y + h, r.rand() < 0.3])
    return np.array(rows, np.float32).reshape(1, 1, -1, 8)


CASES.append(ForkCase("net_detect_and_evaluate", "net", "",
                      {"loc": offsets(2, 24, 1, 1.0), "conf": probabilities(2, 24, 4),
                       "prior": priors(6), "gt": chain_gt}, net=CHAIN, backward=False))

# SSD's output head in miniature, on two feature maps' location and confidence maps (the
# convolutions' outputs, as inputs): permuted and flattened, conf through Reshape ->
# Softmax(axis 2) -> Flatten, priors from PriorBox concatenated, then DetectionOutput, as
# SSD's deploy.prototxt writes it.
C = 3


def _branch(i: int, priors_per_loc: int, prior: str) -> str:
    return f"""
layer {{ name: "loc{i}_perm" type: "Permute" bottom: "loc{i}" top: "loc{i}_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "loc{i}_flat" type: "Flatten" bottom: "loc{i}_perm" top: "loc{i}_flat" }}
layer {{ name: "conf{i}_perm" type: "Permute" bottom: "conf{i}" top: "conf{i}_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "conf{i}_flat" type: "Flatten" bottom: "conf{i}_perm" top: "conf{i}_flat" }}
layer {{ name: "prior{i}" type: "PriorBox" bottom: "loc{i}" bottom: "data" top: "prior{i}"
  prior_box_param {{ {prior} clip: true variance: 0.1 variance: 0.1 variance: 0.2
                     variance: 0.2 }} }}
"""


SSD_OUT = f"""
{_branch(1, 2, "min_size: 3 max_size: 6")}
{_branch(2, 3, "min_size: 6 aspect_ratio: 2 flip: true")}
layer {{ name: "mbox_loc" type: "Concat" bottom: "loc1_flat" bottom: "loc2_flat"
  top: "mbox_loc" concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_conf" type: "Concat" bottom: "conf1_flat" bottom: "conf2_flat"
  top: "mbox_conf" concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_priorbox" type: "Concat" bottom: "prior1" bottom: "prior2"
  top: "mbox_priorbox" concat_param {{ axis: 2 }} }}
layer {{ name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf"
  top: "mbox_conf_reshape" reshape_param {{ shape {{ dim: 0 dim: -1 dim: {C} }} }} }}
layer {{ name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape"
  top: "mbox_conf_softmax" softmax_param {{ axis: 2 }} }}
layer {{ name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax"
  top: "mbox_conf_flatten" flatten_param {{ axis: 1 }} }}
layer {{ name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc"
  bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out"
  detection_output_param {{ num_classes: {C} share_location: true background_label_id: 0
    nms_param {{ nms_threshold: 0.45 top_k: 20 }} keep_top_k: 12 code_type: CENTER_SIZE
    confidence_threshold: 0.3 }} }}
"""


def normal(*shape: int, scale: float = 1.0) -> Gen:
    return lambda r: (r.randn(*shape) * scale).astype(np.float32)


CASES.append(ForkCase("net_ssd_output_head", "net", "", {
    "loc1": normal(2, 2 * 4, 6, 6), "conf1": normal(2, 2 * C, 6, 6, scale=2.0),
    "loc2": normal(2, 3 * 4, 3, 3), "conf2": normal(2, 3 * C, 3, 3, scale=2.0),
    "data": lambda r: np.zeros((2, 3, 24, 24), np.float32)}, net=SSD_OUT, backward=False))


if __name__ == "__main__":
    GOLDEN.mkdir(parents=True, exist_ok=True)
    NAME_SIZE.write_text(NAME_SIZE_TEXT)
    generate(CASES, make)
