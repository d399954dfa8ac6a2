"""Goldens for SSD's MultiBoxLoss from weiliu89/caffe (branch ssd), run for real.

    python tools/make_multibox_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle with its `ssd` overlay (CAFFE_ORACLE_FORK=ssd).  Each
case is one MultiBoxLoss layer fed from legacy `input:` fields with `force_backward: true`
and `propagate_down: true true false false` (as SSD's nets write it; the fork aborts
when asked for the prior's or label's diff): bottoms loc, conf, a PriorBox-like prior grid
in [0, 1] with variances 0.1 0.1 0.2 0.2, and ground truth (1 x 1 x N_gt x 8 rows [item,
label, instance, xmin, ymin, xmax, ymax, difficult]) drawn around some priors.  pycaffe's
forward then backward (the loss seeded with its loss_weight).  Writes
tests/golden/multibox/<case>.npz with `prototxt`, `phase`, `layer`, `input/<blob>`,
`data/loss` and `diff/loc`, `diff/conf`.  net_ssd_train_head is a whole net instead (an
SSD training head: its tops, the image's diff and every parameter with its diff).
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._oracle_goldens import ForkCase, Gen, generate, make_fork_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "multibox"
make = partial(make_fork_golden, folder=GOLDEN, fork="ssd")

# Two feature maps, as PriorBox lays them out: per cell a square box, a larger square and
# two boxes of aspect ratio 2 and 1/2, centred on the cell, clipped to [0, 1].
_MAPS = ((4, 0.3, 0.42), (2, 0.6, 0.78))
PRIORS_PER_CELL = 4
NUM_PRIORS = sum(f * f for f, _, _ in _MAPS) * PRIORS_PER_CELL  # 80


def prior_grid() -> np.ndarray:
    boxes = []
    for f, small, large in _MAPS:
        for y in range(f):
            for x in range(f):
                cx, cy = (x + 0.5) / f, (y + 0.5) / f
                r = np.sqrt(2.0)
                for w, h in ((small, small), (large, large), (small * r, small / r),
                             (small / r, small * r)):
                    boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    b = np.clip(np.array(boxes, dtype=np.float32), 0.0, 1.0)
    var = np.tile(np.array([0.1, 0.1, 0.2, 0.2], np.float32), (len(b), 1))
    return np.stack([b.reshape(-1), var.reshape(-1)])[None]  # (1, 2, P * 4)


def priors() -> Gen:
    return lambda r: prior_grid()


def ground_truth(counts: tuple[int, ...], num_classes: int, difficult: float = 0.0,
                 pad_rows: int = 0) -> Gen:
    """counts[i] boxes for image i, each a jittered copy of a random prior (so that
    priors overlap it), labels 1 .. num_classes - 1; `difficult`: the share flagged
    difficult; `pad_rows` rows of item -1 at the end (AnnotatedData's filler)."""
    def gen(r: np.random.RandomState) -> np.ndarray:
        grid = prior_grid()[0, 0].reshape(-1, 4)
        rows = []
        for item, n in enumerate(counts):
            for k in range(n):
                base = grid[r.randint(len(grid))]
                cx, cy = (base[0] + base[2]) / 2, (base[1] + base[3]) / 2
                w = (base[2] - base[0]) * r.uniform(0.7, 1.3)
                h = (base[3] - base[1]) * r.uniform(0.7, 1.3)
                cx += r.uniform(-0.08, 0.08)
                cy += r.uniform(-0.08, 0.08)
                box = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0.02, 0.98)
                rows.append([item, r.randint(1, num_classes), k, *box,
                             float(r.uniform() < difficult)])
        rows += [[-1] * 8] * pad_rows
        if not rows:
            rows = [[-1] * 8]
        return np.array(rows, dtype=np.float32)[None, None]
    return gen


def normal(*shape: int, scale: float = 1.0) -> Gen:
    return lambda r: r.randn(*shape) * scale


def case(name: str, params: str = "", *, num: int = 2, num_classes: int = 4,
         gt: Gen | None = None, share_location: bool = True, extra: str = "",
         propagate: str = "true true false false", prior: Gen | None = None) -> ForkCase:
    loc_classes = 1 if share_location else num_classes
    body = ('bottom: "loc" bottom: "conf" bottom: "prior" bottom: "label" top: "loss" '
            + " ".join(f"propagate_down: {d}" for d in propagate.split()) + " "
            + extra + f" multibox_loss_param {{ num_classes: {num_classes} {params} }}")
    inputs = {
        "loc": normal(num, NUM_PRIORS * loc_classes * 4, scale=0.5),
        "conf": normal(num, NUM_PRIORS * num_classes, scale=1.5),
        "prior": prior or priors(),
        "label": gt or ground_truth((3,) * num, num_classes),
    }
    diff_of = tuple(b for b, d in zip(("loc", "conf"), propagate.split()) if d == "true")
    return ForkCase(name, "MultiBoxLoss", body, inputs, diff_of)


_SSD_FIELDS = dict(
    loc_loss_type="SMOOTH_L1", conf_loss_type="SOFTMAX", loc_weight="1",
    share_location="true", match_type="PER_PREDICTION", overlap_threshold="0.5",
    use_prior_for_matching="true", background_label_id="0", use_difficult_gt="true",
    neg_pos_ratio="3", neg_overlap="0.5", code_type="CENTER_SIZE",
    ignore_cross_boundary_bbox="false", mining_type="MAX_NEGATIVE")


def ssd(**changes: str) -> str:
    """SSD's own multibox_loss_param (ssd_pascal.py), with `changes`."""
    fields = {**_SSD_FIELDS, **changes}
    return " ".join(f"{k}: {v}" for k, v in fields.items())


_SSD = ssd()
_NORM = "loss_param { normalization: %s }"

CASES = [
    case("ssd_max_negative", _SSD, extra=_NORM % "VALID"),
    case("hard_example_nms", "code_type: CENTER_SIZE mining_type: HARD_EXAMPLE sample_size: 12 "
         "nms_param { nms_threshold: 0.5 top_k: 40 }"),
    case("hard_example_prior_nms", "code_type: CENTER_SIZE mining_type: HARD_EXAMPLE "
         "sample_size: 20 use_prior_for_nms: true nms_param { nms_threshold: 0.45 top_k: 60 }"),
    case("hard_example_no_nms", "mining_type: HARD_EXAMPLE sample_size: 10"),
    # nms_param's top_k defaults to 0, and ApplyNMS keeps the top 0: nothing is mined.
    case("hard_example_nms_default_top_k", "mining_type: HARD_EXAMPLE sample_size: 10 "
         "nms_param { nms_threshold: 0.5 }"),
    case("max_negative_ratio_half", ssd(neg_pos_ratio="0.5")),
    case("max_negative_nms", _SSD + " nms_param { nms_threshold: 0.5 top_k: 50 }"),
    case("logistic_l2_none", "loc_loss_type: L2 conf_loss_type: LOGISTIC mining_type: NONE "
         "code_type: CENTER_SIZE", num=3),
    case("logistic_max_negative", "conf_loss_type: LOGISTIC code_type: CENTER_SIZE"),
    case("share_location_false", "share_location: false mining_type: NONE "
         "code_type: CENTER_SIZE", num_classes=3, share_location=False),
    case("share_location_false_decoded", "share_location: false mining_type: NONE "
         "use_prior_for_matching: false code_type: CENTER_SIZE", num_classes=3,
         share_location=False),
    case("bipartite", ssd(match_type="BIPARTITE")),
    case("per_prediction_low_threshold", ssd(overlap_threshold="0.3")),
    case("difficult_used", _SSD, gt=ground_truth((4, 4), 4, difficult=0.5)),
    case("difficult_skipped", ssd(use_difficult_gt="false"),
         gt=ground_truth((4, 4), 4, difficult=0.5)),
    case("normalization_full", _SSD, extra=_NORM % "FULL"),
    case("normalization_batch_size", _SSD, extra=_NORM % "BATCH_SIZE"),
    case("normalization_none", _SSD, extra=_NORM % "NONE"),
    case("normalize_false_legacy", _SSD, extra="loss_param { normalize: false }"),
    case("image_without_gt", _SSD, num=3, gt=ground_truth((3, 0, 2), 4, pad_rows=1)),
    case("image_without_gt_no_mining", "mining_type: NONE code_type: CENTER_SIZE", num=3,
         gt=ground_truth((0, 3, 0), 4)),
    case("no_gt_at_all", _SSD, gt=ground_truth((0, 0), 4)),
    case("loss_weight", ssd(loc_weight="0.7"), extra="loss_weight: 2.5"),
    case("corner_variance_in_target_bp_inside", "code_type: CORNER "
         "encode_variance_in_target: true bp_inside: true"),
    case("corner_size", "code_type: CORNER_SIZE"),
    case("decoded_matching_cross_boundary", ssd(use_prior_for_matching="false",
                                                ignore_cross_boundary_bbox="true")),
    case("decoded_bp_inside", ssd(use_prior_for_matching="false", bp_inside="true")),
    case("agnostic", "map_object_to_agnostic: true mining_type: NONE code_type: CENTER_SIZE",
         num_classes=2, gt=ground_truth((3, 3), 4)),
    case("background_not_zero", ssd(background_label_id="2"), num_classes=4,
         gt=lambda r: _relabel(ground_truth((3, 3), 4)(r), {2: 3})),
    case("loc_only", _SSD, propagate="true false false false"),
    # background_label_id 4294967295 is the fork's int -1: agnostic then has 1 class.
    case("agnostic_no_background", "map_object_to_agnostic: true conf_loss_type: LOGISTIC "
         "mining_type: NONE background_label_id: 4294967295 code_type: CENTER_SIZE",
         num_classes=1, gt=lambda r: _relabel(ground_truth((3, 3), 2)(r), {1: 0})),
    # GetPriorBBoxes reads the prior blob flat: a second item is never read.
    case("prior_of_two_items", _SSD, prior=lambda r: np.concatenate(
        [prior_grid(), np.clip(prior_grid() + r.uniform(-0.1, 0.1, prior_grid().shape),
                               0.01, 0.99)])),
]


# A whole net (held to 1e-4): SSD's training head in miniature on an 8 x 8 image: location
# and confidence convolutions on two maps, permuted, flattened and concatenated, their
# PriorBoxes concatenated, and MultiBoxLoss with SSD's settings; every parameter's diff.
_G = 'weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "constant" value: 0.1 }'


def _head(i: int, bottom: str, per_cell: int, classes: int) -> str:
    out = ""
    for kind, n in (("loc", per_cell * 4), ("conf", per_cell * classes)):
        out += f"""
layer {{ name: "{kind}{i}" type: "Convolution" bottom: "{bottom}" top: "{kind}{i}"
  convolution_param {{ num_output: {n} kernel_size: 3 pad: 1 {_G} }} }}
layer {{ name: "{kind}{i}_perm" type: "Permute" bottom: "{kind}{i}" top: "{kind}{i}_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "{kind}{i}_flat" type: "Flatten" bottom: "{kind}{i}_perm" top: "{kind}{i}_flat"
  flatten_param {{ axis: 1 }} }}"""
    return out


SSD_TRAIN_HEAD = f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 6 kernel_size: 3 pad: 1 {_G} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
{_head(1, "conv1", 4, 3)}
{_head(2, "pool1", 4, 3)}
layer {{ name: "prior1" type: "PriorBox" bottom: "conv1" bottom: "data" top: "prior1"
  prior_box_param {{ min_size: 2 max_size: 4 aspect_ratio: 2 flip: true clip: true
                     variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }} }}
layer {{ name: "prior2" type: "PriorBox" bottom: "pool1" bottom: "data" top: "prior2"
  prior_box_param {{ min_size: 4 max_size: 7 aspect_ratio: 2 flip: true clip: true
                     variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }} }}
layer {{ name: "mbox_loc" type: "Concat" bottom: "loc1_flat" bottom: "loc2_flat"
  top: "mbox_loc" concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_conf" type: "Concat" bottom: "conf1_flat" bottom: "conf2_flat"
  top: "mbox_conf" concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_priorbox" type: "Concat" bottom: "prior1" bottom: "prior2"
  top: "mbox_priorbox" concat_param {{ axis: 2 }} }}
layer {{ name: "mbox_loss" type: "MultiBoxLoss" bottom: "mbox_loc" bottom: "mbox_conf"
  bottom: "mbox_priorbox" bottom: "label" top: "mbox_loss"
  propagate_down: true propagate_down: true propagate_down: false propagate_down: false
  loss_param {{ normalization: VALID }}
  multibox_loss_param {{ num_classes: 3 {ssd()} }} }}
"""


def random_boxes(counts: tuple[int, ...], num_classes: int) -> Gen:
    def gen(r: np.random.RandomState) -> np.ndarray:
        rows = []
        for item, n in enumerate(counts):
            for k in range(n):
                w, h = r.uniform(0.2, 0.6, 2)
                x, y = r.uniform(0, 1 - w), r.uniform(0, 1 - h)
                rows.append([item, r.randint(1, num_classes), k, x, y, x + w, y + h, 0])
        return np.array(rows, dtype=np.float32)[None, None]
    return gen


CASES.append(ForkCase("net_ssd_train_head", "net", "",
                      {"data": normal(2, 3, 8, 8), "label": random_boxes((3, 2), 3)},
                      ("data",), net=SSD_TRAIN_HEAD))


def _relabel(gt: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    out = gt.copy()
    for a, b in mapping.items():
        out[..., 1][out[..., 1] == a] = b
    return out


if __name__ == "__main__":
    generate(CASES, make)
