"""SSD's MultiBoxLoss (weiliu89/caffe, branch ssd), used by lowering/layers/multibox_loss.py.

Mirrors src/caffe/layers/multibox_loss_layer.cpp and the helpers it calls in
src/caffe/util/bbox_util.cpp: GetGroundTruth, MatchBBox/FindMatches, MineHardExamples
(with its own ApplyNMS, not DetectionOutput's ApplyNMSFast), EncodeLocPrediction,
EncodeConfPrediction and ComputeConfLoss/ComputeLocLoss; the internal SmoothL1Loss or
EuclideanLoss on the matched locations and SoftmaxWithLoss (normalization NONE) or
SigmoidCrossEntropyLoss on the selected confidences.  Matching and mining are discrete:
they run on detached CPU copies in float as the fork, exact up to rounding (the mining's
per-prior ComputeConfLoss sums over classes in torch's vectorized order, not the fork's
sequential one, so a near-tie in its sort may break otherwise) and give a `_Plan`; the
loss and the fork's diffs for loc and conf come from `CaffeMultiBoxLoss`.  The prior and
ground-truth bottoms never get a gradient (the fork aborts if asked for one).

Where the fork surprises (the goldens show each): LOGISTIC without mining steps its
target blob by num_priors per image, not num_priors * num_classes, and fills it with
background_label_id's value; an image without ground truth gets no mined negatives;
nms_param's default top_k of 0 mines nothing; with encode_variance_in_target the loc diff
lacks the 1 / variance of the derivative.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import ExportError, InputError
from . import bbox_util as B
from ._shape_check import count, legacy_shape, wrong_shape
from .constants import FLT_MIN

_CODE_TYPE = {name: value for value, name in B.CODE_TYPES.items()}  # "CENTER_SIZE": 2
_KIND = "MultiBoxLoss"


@dataclass(frozen=True)
class _Plan:
    """What matching and mining chose, as index and target tensors on the inputs' device.

    loc_index (M, 4): flat indices into loc of the matched predictions, in the fork's
    order (image, label, prior); loc_target (M, 4): the encoded ground truth; loc_keep
    (M, 4): False where bp_inside replaces the prediction by the target; loc_var (M, 4):
    the priors' variances (divided out when encode_variance_in_target).  conf_rows (R,):
    rows of conf viewed as (num * num_priors, num_classes), in the fork's order (None:
    every row, no mining); conf_target: (R,) labels (SOFTMAX) or (R, C) targets
    (LOGISTIC).  normalizer: LossLayer::GetNormalizer on the match count, at least 1."""

    loc_index: Tensor
    loc_target: Tensor
    loc_keep: Tensor
    loc_var: Tensor
    conf_rows: Optional[Tensor]
    conf_target: Tensor
    normalizer: float
    num_classes: int
    encode_variance_in_target: bool


def _fail(layer: str, message: str) -> None:
    raise InputError(f"layer '{layer}' ({_KIND}): {message}")


def check_shapes(loc: Sequence[int], conf: Sequence[int], prior: Sequence[int],
                 gt: Sequence[int], num_classes: int, loc_classes: int, layer: str
                 ) -> Tuple[int, int, int]:
    """MultiBoxLossLayer::Reshape's checks on the bottoms' shapes (the lowering's at
    compile time, the forward's on each call); (num, num_priors, num_gt)."""
    loc_l, conf_l = legacy_shape([int(d) for d in loc]), legacy_shape([int(d) for d in conf])
    num = loc_l[0]
    num_priors = legacy_shape([int(d) for d in prior])[2] // 4
    num_gt = legacy_shape([int(d) for d in gt])[2]
    if conf_l[0] != num:
        wrong_shape(layer, _KIND, f"loc of shape {list(loc)} and conf of shape {list(conf)} "
                    "differ in num", "CHECK_EQ(bottom[0]->num(), bottom[1]->num())")
    want = num_priors * loc_classes * 4
    if loc_l[1] != want or count(list(loc[1:])) != want:
        wrong_shape(layer, _KIND, f"loc of shape {list(loc)} for {num_priors} priors needs "
                    f"{want} values per item (priors x {loc_classes} location classes x 4) "
                    "along axis 1", "Number of priors must match number of location "
                    "predictions.")
    want = num_priors * num_classes
    if conf_l[1] != want or count(list(conf[1:])) != want:
        wrong_shape(layer, _KIND, f"conf of shape {list(conf)} for {num_priors} priors needs "
                    f"{want} values per item (priors x {num_classes} classes) along axis 1",
                    "Number of priors must match number of confidence predictions.")
    if count(list(prior)) < num_priors * 8:
        wrong_shape(layer, _KIND, f"prior of shape {list(prior)} holds no variance for each "
                    f"of its {num_priors} boxes", "PriorBox's top: 1 x 2 x num_priors * 4")
    if count(list(gt)) != num_gt * 8:
        wrong_shape(layer, _KIND, f"label of shape {list(gt)} is not 1 x 1 x N x 8 rows "
                    "[item, label, instance, xmin, ymin, xmax, ymax, difficult]",
                    "gt_data[i * 8 + k] for i < bottom[3]->height()")
    return num, num_priors, num_gt


# --------------------------------------------------------------------------- matching

def _ground_truth(gt: Tensor, num_gt: int, background_label_id: int, use_difficult_gt: bool,
                  layer: str) -> Dict[int, Tuple[Tensor, Tensor]]:
    """GetGroundTruth: {item: (boxes [G, 4], labels [G])} in row order; rows of item -1
    are skipped, and difficult ones unless use_difficult_gt."""
    rows = gt.reshape(num_gt, 8)
    out: Dict[int, Tuple[Tensor, Tensor]] = {}
    items = rows[:, 0].to(torch.int64)  # static_cast<int>: truncation
    labels = rows[:, 1].to(torch.int64)
    keep = items != -1
    if bool((keep & (labels == background_label_id)).any()):
        _fail(layer, f"a ground-truth row has the background label {background_label_id} "
                     "(Caffe: Found background label in the dataset.)")
    if not use_difficult_gt:
        keep &= rows[:, 7] == 0
    for item in torch.unique(items[keep]).tolist():
        sel = keep & (items == item)
        out[int(item)] = (rows[sel, 3:7].contiguous(), labels[sel])
    return out


def _match_bbox(gt_boxes: Tensor, gt_labels: Tensor, preds: Tensor, label: int,
                per_prediction: bool, threshold: Tensor, ignore_cross_boundary: bool
                ) -> Tuple[Tensor, Tensor]:
    """MatchBBox: (match index [P] into the image's gt, -1 unmatched, -2 ignored; match
    overlap [P]).  Greedy bipartite matching (the largest overlap first, ties to the
    lowest prediction then gt), then for PER_PREDICTION every other prediction to its
    best gt with overlap >= threshold.  Only overlaps > 1e-6 count."""
    num_pred = preds.shape[0]
    index = torch.full((num_pred,), -1, dtype=torch.int64)
    overlap = torch.zeros(num_pred, dtype=torch.float32)
    gt_idx = torch.arange(gt_boxes.shape[0]) if label == -1 else \
        torch.nonzero(gt_labels == label).reshape(-1)
    if gt_idx.numel() == 0:
        return index, overlap
    ov = B.jaccard_overlap(preds, gt_boxes[gt_idx])  # [P, g]
    valid = ov > 1e-6
    if ignore_cross_boundary:
        cross = ((preds < 0) | (preds > 1)).any(1)
        index[cross] = -2
        valid &= ~cross.unsqueeze(1)
    neg_inf = torch.tensor(float("-inf"))
    masked = torch.where(valid, ov, neg_inf)
    overlap = torch.where(valid, ov, torch.zeros(())).amax(1) if ov.shape[1] else overlap
    rows = torch.nonzero(valid.any(1)).reshape(-1)
    if rows.numel():
        sub = masked[rows]
        g = sub.shape[1]
        for _ in range(g):
            flat = int(torch.argmax(sub))  # the first maximum: the fork's scan order
            best = sub.reshape(-1)[flat]
            if best == neg_inf:
                break
            r, j = divmod(flat, g)
            index[rows[r]] = gt_idx[j]
            overlap[rows[r]] = best
            sub[r, :] = neg_inf
            sub[:, j] = neg_inf
    if per_prediction:
        ok = valid & (ov >= threshold) & (index == -1).unsqueeze(1)
        cand = torch.where(ok, ov, neg_inf)
        has = ok.any(1)
        if bool(has.any()):
            best_val = cand.amax(1)
            best_j = torch.argmax(cand, 1)  # the first maximum
            index[has] = gt_idx[best_j[has]]
            overlap[has] = best_val[has]
    return index, overlap


def _find_matches(loc: Tensor, gts: Dict[int, Tuple[Tensor, Tensor]], priors: Tensor,
                  variances: Tensor, num_classes: int, share_location: bool,
                  per_prediction: bool, threshold: Tensor, use_prior_for_matching: bool,
                  background_label_id: int, code_type: int, encode_variance_in_target: bool,
                  ignore_cross_boundary: bool) -> List[Dict[int, Tuple[Tensor, Tensor]]]:
    """FindMatches: per image {label: (match index, match overlap)}; label -1 when
    share_location; an image without ground truth has no labels at all."""
    out: List[Dict[int, Tuple[Tensor, Tensor]]] = []
    loc_classes = 1 if share_location else num_classes
    for i in range(loc.shape[0]):
        matches: Dict[int, Tuple[Tensor, Tensor]] = {}
        if i not in gts:
            out.append(matches)
            continue
        boxes, labels = gts[i]
        if not use_prior_for_matching:
            for c in range(loc_classes):
                label = -1 if share_location else c
                if not share_location and label == background_label_id:
                    continue
                decoded = B.decode_boxes(loc[i, :, c], priors, variances, code_type,
                                         encode_variance_in_target)
                matches[label] = _match_bbox(boxes, labels, decoded, label, per_prediction,
                                             threshold, ignore_cross_boundary)
        else:
            index, overlap = _match_bbox(boxes, labels, priors, -1, per_prediction,
                                         threshold, ignore_cross_boundary)
            if share_location:
                matches[-1] = (index, overlap)
            else:
                matched = index > -1
                gt_label = labels[index.clamp(min=0)]
                for c in range(loc_classes):
                    if c == background_label_id:
                        continue
                    mine = torch.where(matched & (gt_label == c), index,
                                       torch.full_like(index, -1))
                    matches[c] = (mine, overlap)
        out.append(matches)
    return out


# ---------------------------------------------------------------------------- mining

def _conf_loss(conf: Tensor, labels: Tensor, logistic: bool) -> Tensor:
    """ComputeConfLoss per prior, conf [P, C] against labels [P], in float as the fork."""
    if not logistic:
        maxval = conf.amax(1, keepdim=True)
        e = torch.exp(conf - maxval)
        prob = e.gather(1, labels.unsqueeze(1)).squeeze(1) / e.sum(1)
        return -torch.log(prob.clamp(min=FLT_MIN))
    target = torch.zeros_like(conf)
    inside = (labels >= 0) & (labels < conf.shape[1])
    target[inside.nonzero().reshape(-1), labels[inside]] = 1.0
    return _logistic_terms(conf, target).sum(1)


def _logistic_terms(x: Tensor, t: Tensor) -> Tensor:
    """SigmoidCrossEntropyLoss's stable per-element loss."""
    pos = (x >= 0).to(x.dtype)
    return -(x * (t - pos) - torch.log(1 + torch.exp(x - 2 * x * pos)))


def _loc_terms(pred: Tensor, target: Tensor, smooth_l1: bool) -> Tensor:
    d = pred - target
    if smooth_l1:
        a = d.abs()
        return torch.where(a < 1, 0.5 * d * d, a - 0.5)
    return 0.5 * d * d


def _mining_nms(boxes: Tensor, scores: Tensor, threshold: float, top_k: int, limit: int
                ) -> List[int]:
    """The first `limit` indices of ApplyNMS (bbox_util.cpp, the overload MineHardExamples
    calls): candidates by descending score (stable), the first top_k when top_k > -1 (so
    nms_param's default top_k of 0 leaves none: the fork then mines nothing; eta is not
    read);
    boxes of size < 1e-5 are dropped, and each kept box removes the later candidates it
    overlaps by more than the threshold.  Greedy, so the first `limit` kept depend only on
    the candidates before them."""
    order = torch.sort(scores, descending=True, stable=True).indices
    if top_k > -1:
        order = order[:top_k]
    cand = boxes[order]
    alive = B.bbox_size(cand) >= 1e-5
    thr = torch.tensor(threshold, dtype=torch.float32)
    kept: List[int] = []
    while len(kept) < limit:
        left = torch.nonzero(alive).reshape(-1)
        if left.numel() == 0:
            break
        k = int(left[0])
        kept.append(int(order[k]))
        alive[k] = False
        if top_k > -1 and len(kept) >= top_k:
            break
        rest = left[1:]
        if rest.numel():
            ov = B.jaccard_overlap(cand[k:k + 1], cand[rest]).reshape(-1)
            alive[rest[ov > thr]] = False
    return kept


def _mine(conf: Tensor, loc: Tensor, gts: Dict[int, Tuple[Tensor, Tensor]],
          matches: List[Dict[int, Tuple[Tensor, Tensor]]], priors: Tensor, variances: Tensor,
          cfg: Dict[str, Any], layer: str) -> List[List[int]]:
    """MineHardExamples: per image the negatives chosen (ascending prior index); for
    HARD_EXAMPLE, the positives not chosen lose their match (in `matches`, in place).
    Without nms_param the fork sorts with std::sort, which is not stable: among priors of
    exactly equal loss at the cut it may pick others than the lowest indices chosen here
    (the loss is the same; which rows get a diff may differ)."""
    hard = cfg["mining_type"] == "HARD_EXAMPLE"
    losses = _mining_loss(conf, loc, gts, matches, priors, variances, cfg, layer)
    negs: List[List[int]] = []
    for i, image in enumerate(matches):
        chosen: List[int] = []
        for index, overlap in image.values():
            selected = _select(losses[i], index, overlap, loc[i], priors, variances, cfg)
            if hard:
                index[(index > -1) & ~selected] = -1
            # Dropped positives were not selected: the negatives are the selected -1s.
            chosen += torch.nonzero((index == -1) & selected).reshape(-1).tolist()
        negs.append(sorted(chosen))
    return negs


def _mining_loss(conf: Tensor, loc: Tensor, gts: Dict[int, Tuple[Tensor, Tensor]],
                 matches: List[Dict[int, Tuple[Tensor, Tensor]]], priors: Tensor,
                 variances: Tensor, cfg: Dict[str, Any], layer: str) -> Tensor:
    """(num, num_priors): ComputeConfLoss against each prior's matched label (background
    unmatched), plus for HARD_EXAMPLE ComputeLocLoss of the matched priors."""
    num_classes = cfg["num_classes"]
    labels = torch.full(conf.shape[:2], cfg["background_label_id"], dtype=torch.int64)
    for i, image in enumerate(matches):
        for index, _ in image.values():  # one label: mining needs share_location
            hit = index > -1
            labels[i, hit] = gts[i][1][index[hit]]
            _check_labels(layer, labels[i, hit], num_classes)  # ComputeConfLoss's CHECKs
    loss = _conf_loss(conf.reshape(-1, num_classes), labels.reshape(-1),
                      cfg["conf_loss_type"] == "LOGISTIC").reshape(labels.shape)
    if cfg["mining_type"] != "HARD_EXAMPLE":
        return loss
    loc_loss = torch.zeros_like(loss)
    for i, image in enumerate(matches):
        for label, (index, _) in image.items():
            m = torch.nonzero(index > -1).reshape(-1)
            if m.numel():
                pred, target = _encode_loc(loc[i, :, 0 if label == -1 else label][m],
                                           gts[i][0][index[m]], priors[m], variances[m], cfg)
                loc_loss[i, m] = _loc_terms(pred, target,
                                            cfg["loc_loss_type"] == "SMOOTH_L1").sum(1)
    return loss + loc_loss


def _select(loss: Tensor, index: Tensor, overlap: Tensor, loc: Tensor, priors: Tensor,
            variances: Tensor, cfg: Dict[str, Any]) -> Tensor:
    """The priors of one image (and label) that mining selects, as a mask: the highest
    losses among the eligible ones (every prior for HARD_EXAMPLE, else the unmatched of
    overlap < neg_overlap), sample_size of them or neg_pos_ratio x the positives, through
    the mining's NMS when nms_param has a threshold."""
    hard = cfg["mining_type"] == "HARD_EXAMPLE"
    neg_overlap = torch.tensor(cfg["neg_overlap"], dtype=torch.float32)
    eligible = torch.ones_like(index, dtype=torch.bool) if hard else \
        (index == -1) & (overlap < neg_overlap)
    cand = torch.nonzero(eligible).reshape(-1)
    num_sel = int(cand.numel())
    if hard:
        num_sel = min(cfg["sample_size"], num_sel)
    else:
        num_pos = int((index > -1).sum())
        num_sel = min(int(np.float32(num_pos) * np.float32(cfg["neg_pos_ratio"])), num_sel)
    num_sel = max(num_sel, 0)  # a negative count selects nothing (for n < num_sel)
    if cfg["has_nms"] and cfg["nms_threshold"] > 0:
        if cfg["use_prior_for_nms"]:
            boxes = priors[cand]
        else:
            boxes = B.decode_boxes(loc[:, 0][cand], priors[cand], variances[cand],
                                   cfg["code_type"], cfg["encode_variance_in_target"])
        picked = _mining_nms(boxes, loss[cand], cfg["nms_threshold"], cfg["top_k"], num_sel)
        sel = cand[torch.tensor(picked, dtype=torch.int64)]
    else:
        order = torch.sort(loss[cand], descending=True, stable=True).indices
        sel = cand[order[:num_sel]]
    selected = torch.zeros_like(eligible)
    selected[sel] = True
    return selected


# --------------------------------------------------------------------------- encoding

def _encode_loc(pred: Tensor, gt_boxes: Tensor, priors: Tensor, variances: Tensor,
                cfg: Dict[str, Any]) -> Tuple[Tensor, Tensor]:
    """EncodeLocPrediction for matched predictions [M, 4]: (prediction, target) as the
    internal loc loss reads them (bp_inside, then / variance when encoded in target)."""
    target, keep = _encode_target(pred, gt_boxes, priors, variances, cfg)
    out = torch.where(keep, pred, target)
    if cfg["encode_variance_in_target"]:
        out, target = out / variances, target / variances
    return out, target


def _encode_target(pred: Tensor, gt_boxes: Tensor, priors: Tensor, variances: Tensor,
                   cfg: Dict[str, Any]) -> Tuple[Tensor, Tensor]:
    """(EncodeBBox of the matched ground truth, False where bp_inside replaces the
    prediction by it: a side of the prior, or of the decoded prediction when matching
    used predictions, outside [0, 1])."""
    code, evit = cfg["code_type"], cfg["encode_variance_in_target"]
    target = B.encode_boxes(gt_boxes, priors, variances, code, evit)
    keep = torch.ones_like(pred, dtype=torch.bool)
    if cfg["bp_inside"]:
        match = priors if cfg["use_prior_for_matching"] else \
            B.decode_boxes(pred, priors, variances, code, evit)
        keep = (match >= 0) & (match <= 1)
    return target, keep


def _check_boxes(layer: str, code_type: int, priors: Tensor, gts: Dict[int, Tuple[Tensor, Tensor]]
                 ) -> None:
    if code_type == B.CORNER:
        return
    pw = priors[:, 2] - priors[:, 0]
    ph = priors[:, 3] - priors[:, 1]
    if bool(((pw <= 0) | (ph <= 0)).any()):
        _fail(layer, f"code_type {B.CODE_TYPES[code_type]} needs priors of positive width "
                     "and height (Caffe: CHECK_GT(prior_width, 0))")
    if code_type == B.CENTER_SIZE:
        for boxes, _ in gts.values():
            if bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()):
                _fail(layer, "code_type CENTER_SIZE needs ground-truth boxes of positive "
                             "width and height (Caffe: CHECK_GT(bbox_width, 0))")


_Matches = List[Dict[int, Tuple[Tensor, Tensor]]]
_GroundTruth = Dict[int, Tuple[Tensor, Tensor]]


def _matched(image: Dict[int, Tuple[Tensor, Tensor]]) -> Iterator[Tuple[int, Tensor, Tensor]]:
    """(label, match index, matched priors) of an image's matches in the fork's map order
    (ascending label); the matched priors are those whose index is > -1."""
    for label in sorted(image):
        index = image[label][0]
        yield label, index, torch.nonzero(index > -1).reshape(-1)


def _plan(loc: Tensor, conf: Tensor, prior: Tensor, gt: Tensor, num_priors: int, num_gt: int,
          cfg: Dict[str, Any], layer: str) -> _Plan:
    num = loc.shape[0]
    num_classes = cfg["num_classes"]
    share = cfg["share_location"]
    loc_classes = 1 if share else num_classes
    bg = cfg["background_label_id"]
    mining = cfg["mining_type"] != "NONE"
    loc4 = loc.reshape(num, num_priors, loc_classes, 4)
    conf3 = conf.reshape(num, num_priors, num_classes)
    priors, variances = B.prior_boxes(prior, num_priors)  # flat, as GetPriorBBoxes reads it
    gts = _ground_truth(gt, num_gt, bg, cfg["use_difficult_gt"], layer)
    _check_boxes(layer, cfg["code_type"], priors, gts)
    thr = torch.tensor(cfg["overlap_threshold"], dtype=torch.float32)
    matches = _find_matches(loc4, gts, priors, variances, num_classes, share,
                            cfg["match_type"] == "PER_PREDICTION", thr,
                            cfg["use_prior_for_matching"], bg, cfg["code_type"],
                            cfg["encode_variance_in_target"], cfg["ignore_cross_boundary_bbox"])
    negs = _mine(conf3, loc4, gts, matches, priors, variances, cfg, layer) if mining \
        else [[] for _ in range(num)]
    loc_index, loc_target, loc_keep, loc_var = _loc_plan(loc4, gts, matches, priors,
                                                         variances, cfg)
    conf_rows: Optional[Tensor] = None
    if mining:
        conf_rows, conf_target = _conf_plan_mined(gts, matches, negs, num_priors, cfg, layer)
    else:
        conf_target = _conf_plan_all(gts, matches, num, num_priors, cfg, layer)
    # VALID counts the matches left after HARD_EXAMPLE dropped some: the loc rows.
    normalizer = _normalizer(cfg["normalization"], num, num_priors, int(loc_index.shape[0]))
    dev = loc.device
    return _Plan(loc_index.to(dev), loc_target.to(dev), loc_keep.to(dev), loc_var.to(dev),
                 None if conf_rows is None else conf_rows.to(dev), conf_target.to(dev),
                 normalizer, num_classes, cfg["encode_variance_in_target"])


def _loc_plan(loc4: Tensor, gts: _GroundTruth, matches: _Matches, priors: Tensor,
              variances: Tensor, cfg: Dict[str, Any]
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The matched locations in the fork's order (image, label, prior): their flat indices
    into loc, encoded targets, bp_inside keep mask and variances, each (M, 4)."""
    _, num_priors, loc_classes, _ = loc4.shape
    share = cfg["share_location"]
    idx_parts, tgt_parts, keep_parts, var_parts = [], [], [], []
    for i, image in enumerate(matches):
        for label, index, m in _matched(image):
            if not m.numel():
                continue
            slot = 0 if share else label
            target, keep = _encode_target(loc4[i, m, slot], gts[i][0][index[m]], priors[m],
                                          variances[m], cfg)
            base = (i * num_priors + m) * loc_classes * 4 + slot * 4
            idx_parts.append(base.unsqueeze(1) + torch.arange(4))
            tgt_parts.append(target)
            keep_parts.append(keep)
            var_parts.append(variances[m])
    if not idx_parts:
        empty = torch.zeros((0, 4))
        return torch.zeros((0, 4), dtype=torch.int64), empty, \
            torch.zeros((0, 4), dtype=torch.bool), empty
    return torch.cat(idx_parts), torch.cat(tgt_parts), torch.cat(keep_parts), \
        torch.cat(var_parts)


def _gt_label(gts: _GroundTruth, i: int, index: Tensor, cfg: Dict[str, Any]) -> Tensor:
    """EncodeConfPrediction's label of image i's matched ground truth `index`."""
    if cfg["map_object_to_agnostic"]:
        return torch.full_like(index, cfg["background_label_id"] + 1)
    return gts[i][1][index]


def _conf_plan_mined(gts: _GroundTruth, matches: _Matches, negs: List[List[int]],
                     num_priors: int, cfg: Dict[str, Any], layer: str
                     ) -> Tuple[Tensor, Tensor]:
    """EncodeConfPrediction with mining: the rows (each image's positives in label order,
    then its mined negatives) and their targets."""
    bg, num_classes = cfg["background_label_id"], cfg["num_classes"]
    rows, labels, negative = [], [], []
    for i, image in enumerate(matches):
        if i not in gts:
            continue
        for _, index, m in _matched(image):
            rows.append(i * num_priors + m)
            labels.append(_gt_label(gts, i, index[m], cfg))
            negative.append(torch.zeros(m.numel(), dtype=torch.bool))
        n = torch.tensor(negs[i], dtype=torch.int64)
        rows.append(i * num_priors + n)
        labels.append(torch.full_like(n, bg))
        negative.append(torch.ones(n.numel(), dtype=torch.bool))
    conf_rows = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
    conf_label = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    is_neg = torch.cat(negative) if negative else torch.zeros(0, dtype=torch.bool)
    if cfg["conf_loss_type"] != "LOGISTIC":
        _check_labels(layer, conf_label, num_classes)
        return conf_rows, conf_label
    # conf_gt is filled with background_label_id, then 1 at each row's label (a
    # negative's only when the background id is a class).
    target = torch.full((int(conf_rows.numel()), num_classes), float(bg))
    r = torch.nonzero(~is_neg if not 0 <= bg < num_classes
                      else torch.ones_like(is_neg)).reshape(-1)
    _check_labels(layer, conf_label[r], num_classes)
    target[r, conf_label[r]] = 1.0
    return conf_rows, target


def _conf_plan_all(gts: _GroundTruth, matches: _Matches, num: int, num_priors: int,
                   cfg: Dict[str, Any], layer: str) -> Tensor:
    """EncodeConfPrediction without mining: every row's target, background where no
    ground truth matched."""
    bg, num_classes = cfg["background_label_id"], cfg["num_classes"]
    if cfg["conf_loss_type"] == "LOGISTIC":
        # The fork steps conf_gt by num_priors per image, not num_priors * num_classes:
        # image i's positive j sets flat element i * P + j * C + label.
        flat = torch.full((num * num_priors * num_classes,), float(bg))
        for i, image in enumerate(matches):
            if i not in gts:
                continue
            for _, index, m in _matched(image):
                lab = _gt_label(gts, i, index[m], cfg)
                _check_labels(layer, lab, num_classes)
                flat[i * num_priors + m * num_classes + lab] = 1.0
        return flat.reshape(num * num_priors, num_classes)
    labels_all = torch.full((num, num_priors), bg, dtype=torch.int64)
    for i, image in enumerate(matches):
        if i not in gts:
            continue
        for _, index, m in _matched(image):
            labels_all[i, m] = _gt_label(gts, i, index[m], cfg)
    _check_labels(layer, labels_all, num_classes)
    return labels_all.reshape(-1)


def _normalizer(mode: str, num: int, num_priors: int, num_matches: int) -> float:
    """LossLayer::GetNormalizer on the match count, at least 1."""
    if mode == "FULL":
        normalizer = float(num * num_priors)
    elif mode == "VALID":
        normalizer = float(num_matches)
    elif mode == "BATCH_SIZE":
        normalizer = float(num)
    else:
        normalizer = 1.0
    return max(1.0, normalizer)


def _check_labels(layer: str, labels: Tensor, num_classes: int) -> None:
    if labels.numel() and bool(((labels < 0) | (labels >= num_classes)).any()):
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        _fail(layer, f"ground-truth label {bad} is not a class of num_classes = "
                     f"{num_classes}; allowed: 0 to {num_classes - 1}")


# -------------------------------------------------------------------------- the loss

class CaffeMultiBoxLoss(torch.autograd.Function):
    """MultiBoxLoss's Forward_cpu on a fixed plan, and its Backward_cpu: the loc diff is
    loc_weight f'(d) (SmoothL1's clipped d, or d for L2) / normalizer at each matched
    prediction, without the 1 / variance of encode_variance_in_target (the fork copies the
    diff of the divided values back unchanged); the conf diff is (softmax - onehot) or
    (sigmoid - target) / normalizer at the selected rows; 0 elsewhere."""

    @staticmethod
    def forward(ctx: Any, loc: Tensor, conf: Tensor, plan: _Plan, loc_weight: float,
                smooth_l1: bool, logistic: bool, loc_term: bool, conf_term: bool) -> Tensor:
        pred = loc.reshape(-1)[plan.loc_index]
        target = plan.loc_target.to(loc.dtype)
        pred = torch.where(plan.loc_keep, pred, target)
        if plan.encode_variance_in_target:
            pred, target = pred / plan.loc_var, target / plan.loc_var
        d = pred - target
        loc_loss = _loc_terms(pred, target, smooth_l1).sum()
        c = conf.reshape(-1, plan.num_classes)
        rows = c if plan.conf_rows is None else c[plan.conf_rows]
        if logistic:
            conf_loss = _logistic_terms(rows, plan.conf_target).sum()
            prob = torch.sigmoid(rows)
        else:
            prob = torch.softmax(rows, 1)
            picked = prob.gather(1, plan.conf_target.unsqueeze(1)).squeeze(1)
            conf_loss = -torch.log(picked.clamp(min=FLT_MIN)).sum()
        lw = torch.tensor(loc_weight, dtype=loc.dtype)
        norm = torch.tensor(plan.normalizer, dtype=loc.dtype)
        total = torch.zeros((), dtype=loc.dtype, device=loc.device)
        if loc_term:
            total = total + lw * loc_loss / norm
        if conf_term:
            total = total + conf_loss / norm
        ctx.save_for_backward(d, prob)
        ctx.plan = plan
        ctx.cfg = (loc_weight, smooth_l1, logistic, tuple(loc.shape), tuple(conf.shape))
        return total

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, g: Tensor) -> Tuple[Optional[Tensor], ...]:
        d, prob = ctx.saved_tensors
        plan: _Plan = ctx.plan
        loc_weight, smooth_l1, logistic, loc_shape, conf_shape = ctx.cfg
        scale = g / plan.normalizer
        grad_loc = grad_conf = None
        if ctx.needs_input_grad[0]:
            slope = torch.where(d.abs() < 1, d, torch.sign(d)) if smooth_l1 else d
            flat = torch.zeros(int(np.prod(loc_shape)), dtype=d.dtype, device=d.device)
            flat[plan.loc_index.reshape(-1)] = (slope * loc_weight * scale).reshape(-1)
            grad_loc = flat.reshape(loc_shape)
        if ctx.needs_input_grad[1]:
            if logistic:
                diff = prob - plan.conf_target
            else:
                diff = prob.clone()
                diff.scatter_add_(1, plan.conf_target.unsqueeze(1),
                                  -torch.ones_like(diff[:, :1]))
            diff = diff * scale
            if plan.conf_rows is None:
                grad_conf = diff.reshape(conf_shape)
            else:
                c = diff.shape[1]
                full = torch.zeros((int(np.prod(conf_shape)) // c, c), dtype=diff.dtype,
                                   device=diff.device)
                full[plan.conf_rows] = diff
                grad_conf = full.reshape(conf_shape)
        return grad_loc, grad_conf, None, None, None, None, None, None


def not_scripted(layer: str) -> str:
    """Why torch.jit.script refuses a net with this layer (ExportError)."""
    return (f"layer '{layer}' ({_KIND}) cannot be scripted with TorchScript: its matching "
            "and hard-negative mining depend on the data and run only eagerly in Python; "
            "script the net without it (compile(..., outputs=[its bottoms])), or train the "
            "GraphModule eagerly or with torch.compile")


@torch.fx.wrap
def multibox_loss(loc: Tensor, conf: Tensor, prior: Tensor, gt: Tensor, num_classes: int,
                  share_location: bool, match_type: str, overlap_threshold: float,
                  use_prior_for_matching: bool, background_label_id: int,
                  use_difficult_gt: bool, mining_type: str, neg_pos_ratio: float,
                  neg_overlap: float, code_type: str, encode_variance_in_target: bool,
                  map_object_to_agnostic: bool, ignore_cross_boundary_bbox: bool,
                  bp_inside: bool, loc_loss_type: str, conf_loss_type: str,
                  loc_weight: float, has_nms: bool, nms_threshold: float, top_k: int,
                  sample_size: int, use_prior_for_nms: bool, normalization: str,
                  loc_term: bool = True, conf_term: bool = True, layer: str = "") -> Tensor:
    """MultiBoxLoss (multibox_loss_layer.cpp): bottoms loc (N, P * L * 4), conf
    (N, P * C), PriorBox's prior (1, 2, P * 4) and the label (1, 1, N_gt, 8); a 0-axis
    loss.  loc_term/conf_term: the layer's propagate_down for loc and conf (the fork adds
    a term to the loss only for a bottom it propagates to).  Eager only: torch.compile
    runs it between its graphs, torch.export raises ExportError, and torch.jit.script of
    the net raises ExportError (not_scripted) from the layer's module."""
    loc_classes = 1 if share_location else num_classes
    num, num_priors, num_gt = check_shapes(loc.shape, conf.shape, prior.shape, gt.shape,
                                           num_classes, loc_classes, layer)
    if loc.device.type == "meta":
        return torch.empty((), dtype=loc.dtype, device=loc.device)
    if torch.compiler.is_exporting():
        raise ExportError(f"layer '{layer}' ({_KIND}): its matching and hard-negative "
                          "mining depend on the data, so it runs only eagerly in the "
                          "GraphModule and cannot be exported with torch.export or ONNX; "
                          "export the net without it (compile(..., outputs=[its bottoms]))")
    cfg = dict(num_classes=num_classes, share_location=share_location, match_type=match_type,
               overlap_threshold=overlap_threshold,
               use_prior_for_matching=use_prior_for_matching,
               background_label_id=background_label_id, use_difficult_gt=use_difficult_gt,
               mining_type=mining_type, neg_pos_ratio=neg_pos_ratio, neg_overlap=neg_overlap,
               code_type=_CODE_TYPE[code_type],
               encode_variance_in_target=encode_variance_in_target,
               map_object_to_agnostic=map_object_to_agnostic,
               ignore_cross_boundary_bbox=ignore_cross_boundary_bbox, bp_inside=bp_inside,
               loc_loss_type=loc_loss_type, conf_loss_type=conf_loss_type, has_nms=has_nms,
               nms_threshold=nms_threshold, top_k=top_k, sample_size=sample_size,
               use_prior_for_nms=use_prior_for_nms, normalization=normalization,
               loc_weight=loc_weight, loc_term=loc_term, conf_term=conf_term)
    return _eager(loc, conf, prior, gt, num_priors, num_gt, cfg, layer)


@torch.compiler.disable  # torch.compile runs it eagerly, between two compiled graphs
def _eager(loc: Tensor, conf: Tensor, prior: Tensor, gt: Tensor, num_priors: int,
           num_gt: int, cfg: Dict[str, Any], layer: str) -> Tensor:
    with torch.no_grad():
        cpu = [t.detach().to("cpu", torch.float32) for t in (loc, conf, prior, gt)]
        plan = _plan(*cpu, num_priors, num_gt, cfg, layer)
    return CaffeMultiBoxLoss.apply(loc, conf, plan, cfg["loc_weight"],
                                   cfg["loc_loss_type"] == "SMOOTH_L1",
                                   cfg["conf_loss_type"] == "LOGISTIC", cfg["loc_term"],
                                   cfg["conf_term"])
