"""DetectionOutput and DetectionEvaluate of SSD (weiliu89/caffe, branch ssd), on bbox_util.

Mirrors the fork's src/caffe/layers/detection_output_layer.cpp and
detection_evaluate_layer.cpp (Forward_cpu).  Their tops have a data-dependent number of
rows, so both run eagerly in the GraphModule: on meta tensors (shape inference at compile
time) they give the shape Caffe's Net::Init gives (DetectionOutput's fake (1, 1, 1, 7)),
under torch.export (and so ONNX export) they raise ExportError naming the layer, under
TorchScript a RuntimeError when reached, torch.compile runs them untraced, and neither
has a backward (the fork's is NOT_IMPLEMENTED): a gradient asked through one
raises UnsupportedFieldError.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ExportError, InputError, ShapeError, UnsupportedFieldError
from . import bbox_util as bu
from .caffe_grad import caffe_grad


def _refuse_export(layer: str, kind: str) -> None:
    if torch.compiler.is_exporting():
        raise ExportError(
            f"layer '{layer}' ({kind}): its top has a data-dependent number of rows (the "
            "detections kept), so it runs only eagerly in the GraphModule and cannot be "
            "exported with torch.export or ONNX; export the net without it "
            "(compile(..., outputs=[its bottoms])) and run it on the outputs")


def not_scripted(layer: str, kind: str) -> str:
    """Under TorchScript the layer raises this when run (a RuntimeError, as TorchScript has
    no caffe_fx errors): its loops over a data-dependent number of boxes are Python's."""
    return ("layer '" + layer + "' (" + kind + "): its top has a data-dependent number of "
            "rows and runs only eagerly in Python; TorchScript cannot run it: script the net "
            "without it (compile(..., outputs=[its bottoms])) and run it on the outputs")


class _NoBackward(torch.autograd.Function):
    """Runs `fn` on the inputs; its backward refuses, as the fork's NOT_IMPLEMENTED."""

    @staticmethod
    def forward(ctx: Any, fn: Any, layer: str, kind: str, *xs: Tensor) -> Tensor:
        ctx.who = f"layer '{layer}' ({kind})"
        return fn(*xs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Any:
        raise UnsupportedFieldError(
            f"{ctx.who}: has no backward (the fork's Backward_cpu is NOT_IMPLEMENTED); "
            "Caffe never differentiates it unless force_backward, where it aborts. Keep it "
            "off the loss's path, or detach its bottoms")


# --------------------------------------------------------------------- DetectionOutput

@torch.fx.wrap
def detection_output(loc: Tensor, conf: Tensor, prior: Tensor, num_classes: int,
                     share_location: bool, background_label_id: int, nms_threshold: float,
                     top_k: int, eta: float, keep_top_k: int, confidence_threshold: float,
                     code_type: int, variance_encoded_in_target: bool, layer: str
                     ) -> Tensor:
    """DetectionOutput (detection_output_layer.cpp): loc (N, P L 4), conf (N, P C) class
    probabilities and PriorBox's (1, 2, P 4) to (1, 1, kept, 7) rows [image, label, score,
    xmin, ymin, xmax, ymax]: per image, per label ascending (background skipped), the boxes
    decoded from the priors, kept by ApplyNMSFast (score > confidence_threshold, the best
    top_k, then greedy NMS), by descending score; with keep_top_k > -1 only the image's
    keep_top_k best of them.  No box kept in the whole batch: one row [i, -1, ..., -1]
    per image.  Decoded boxes are not clipped."""
    if not torch.jit.is_scripting():  # TorchScript compiles none of this block
        _refuse_export(layer, "DetectionOutput")
        return _eager_detection_output(
            loc, conf, prior, num_classes, share_location, background_label_id,
            nms_threshold, top_k, eta, keep_top_k, confidence_threshold, code_type,
            variance_encoded_in_target, layer)
    raise RuntimeError(not_scripted(layer, "DetectionOutput"))


@torch.compiler.disable  # torch.compile runs it as it is (its loops are data-dependent)
def _eager_detection_output(loc: Tensor, conf: Tensor, prior: Tensor, *args: Any) -> Tensor:
    layer = args[-1]
    if loc.device.type == "meta":  # Reshape's fake top: the count is known only by running
        return torch.empty([1, 1, 1, 7], dtype=loc.dtype, device=loc.device)

    def run(loc_: Tensor, conf_: Tensor, prior_: Tensor) -> Tensor:
        return _detection_output(loc_, conf_, prior_, *args)

    if caffe_grad(loc, conf, prior):
        return _NoBackward.apply(run, layer, "DetectionOutput", loc, conf, prior)
    return run(loc, conf, prior)


def _detection_output(loc: Tensor, conf: Tensor, prior: Tensor, num_classes: int,
                      share_location: bool, background_label_id: int, nms_threshold: float,
                      top_k: int, eta: float, keep_top_k: int, confidence_threshold: float,
                      code_type: int, variance_encoded_in_target: bool, layer: str
                      ) -> Tensor:
    who = f"layer '{layer}' (DetectionOutput)"
    check_detection_output_shapes(who, tuple(loc.shape), tuple(conf.shape),
                                  tuple(prior.shape), num_classes, share_location)
    num = loc.shape[0]
    num_priors = prior.shape[2] // 4
    num_loc = 1 if share_location else num_classes
    priors, variances = bu.prior_boxes(prior)
    if code_type != bu.CORNER:
        pw = priors[:, 2] - priors[:, 0]
        ph = priors[:, 3] - priors[:, 1]
        bad = torch.nonzero(~((pw > 0) & (ph > 0))).reshape(-1)
        if bad.numel():
            k = int(bad[0])
            raise InputError(
                f"{who}: prior {k} = {priors[k].tolist()} has width or height <= 0; "
                f"code_type {bu.CODE_TYPES[code_type]} needs priors of positive size (the "
                "fork's CHECK_GT(prior_width, 0) in DecodeBBox)")
    locs = loc.reshape(num, num_priors, num_loc, 4)
    boxes = bu.decode_boxes(locs, priors.unsqueeze(1), variances.unsqueeze(1), code_type,
                            variance_encoded_in_target)
    scores = conf.reshape(num, num_priors, num_classes)
    rows: list[Tensor] = []
    for i in range(num):
        labels: list[Tensor] = []
        picks: list[Tensor] = []
        for c in range(num_classes):
            if c == background_label_id:
                continue
            kept = bu.nms_fast(boxes[i, :, 0 if share_location else c], scores[i, :, c],
                               confidence_threshold, nms_threshold, eta, top_k)
            labels.append(torch.full_like(kept, c))
            picks.append(kept)
        if not picks:
            continue
        label = torch.cat(labels)
        pick = torch.cat(picks)
        score = scores[i, pick, label]
        if -1 < keep_top_k < pick.numel():
            # std::sort by score over the image's kept boxes, the first keep_top_k,
            # regrouped by label (a std::map) in that score order.
            best = torch.sort(score, descending=True, stable=True).indices[:keep_top_k]
            best = best[torch.sort(label[best], stable=True).indices]
            label, pick, score = label[best], pick[best], score[best]
        box = boxes[i, pick, 0 if share_location else label]
        image = torch.full_like(score, float(i))
        rows.append(torch.cat([image[:, None], label[:, None].to(score.dtype),
                               score[:, None], box], 1))
    out = torch.cat(rows) if rows else loc.new_empty([0, 7])
    if out.shape[0] == 0:  # "Couldn't find any detections": one fake row per image
        out = torch.full([num, 7], -1.0, dtype=loc.dtype, device=loc.device)
        out[:, 0] = torch.arange(num, dtype=loc.dtype, device=loc.device)
    return out.reshape(1, 1, -1, 7)


def check_detection_output_shapes(who: str, loc: tuple[int, ...], conf: tuple[int, ...],
                                  prior: tuple[int, ...], num_classes: int,
                                  share_location: bool) -> None:
    """DetectionOutput's Reshape CHECKs (and that loc/conf hold only the checked axis, as
    Forward_cpu reads them flat per image), as a ShapeError."""
    num_loc = 1 if share_location else num_classes
    if len(prior) < 3 or prior[0] != 1 or prior[1] != 2 or \
            any(d != 1 for d in prior[3:]):
        raise ShapeError(f"{who}: bottom 2 (the priors) of shape {list(prior)}; allowed: "
                         "PriorBox's (1, 2, num_priors * 4)")
    num_priors = prior[2] // 4
    if len(loc) < 2 or len(conf) < 2 or loc[0] != conf[0]:
        raise ShapeError(f"{who}: bottoms of shapes {list(loc)} and {list(conf)}; allowed: "
                         "(N, ...) locations and (N, ...) confidences (Caffe: "
                         "bottom[0]->num() == bottom[1]->num())")
    if loc[1] != num_priors * num_loc * 4 or any(d != 1 for d in loc[2:]):
        raise ShapeError(
            f"{who}: bottom 0 of shape {list(loc)}; allowed: (N, {num_priors * num_loc * 4}) "
            f"for {num_priors} priors x {num_loc} location classes x 4 (Caffe: Number of "
            "priors must match number of location predictions)")
    if conf[1] != num_priors * num_classes or any(d != 1 for d in conf[2:]):
        raise ShapeError(
            f"{who}: bottom 1 of shape {list(conf)}; allowed: (N, {num_priors * num_classes}) "
            f"for {num_priors} priors x {num_classes} classes (Caffe: Number of priors must "
            "match number of confidence predictions)")


# ------------------------------------------------------------------- DetectionEvaluate

@torch.fx.wrap
def detection_evaluate(det: Tensor, gt: Tensor, num_classes: int, background_label_id: int,
                       overlap_threshold: float, evaluate_difficult_gt: bool, layer: str
                       ) -> Tensor:
    """DetectionEvaluate (detection_evaluate_layer.cpp), normalized boxes: detections
    (1, 1, D, 7) and ground truth (1, 1, G, 8) rows [item, label, instance, xmin, ymin,
    xmax, ymax, difficult] to (1, 1, num_pos_classes + num_valid_det, 5) rows: first, per
    class but the background, [-1, c, number of gt of c (difficult ones only with
    evaluate_difficult_gt), -1, -1]; then per image and label ascending the detections
    [image, label, score, tp, fp], by descending score where the image has gt of that
    label, matched greedily to the best-overlapping unmatched gt (overlap >=
    overlap_threshold; a match to a difficult gt counts neither way unless
    evaluate_difficult_gt).  Rows with label -1 are skipped."""
    if not torch.jit.is_scripting():  # TorchScript compiles none of this block
        _refuse_export(layer, "DetectionEvaluate")
        return _eager_detection_evaluate(det, gt, num_classes, background_label_id,
                                         overlap_threshold, evaluate_difficult_gt, layer)
    raise RuntimeError(not_scripted(layer, "DetectionEvaluate"))


@torch.compiler.disable  # torch.compile runs it as it is (its loops are data-dependent)
def _eager_detection_evaluate(det: Tensor, gt: Tensor, num_classes: int,
                              background_label_id: int, *args: Any) -> Tensor:
    layer = args[-1]
    num_pos_classes = num_classes if background_label_id == -1 else num_classes - 1
    # Shapes only: Reshape counts the rows whose label is not -1; at Net::Init the bottom
    # (DetectionOutput's fake row, zero-filled, label 0) has none of -1, so every row.
    if det.device.type == "meta":
        return torch.empty([1, 1, num_pos_classes + det.shape[2], 5], dtype=det.dtype,
                           device=det.device)

    def run(det_: Tensor, gt_: Tensor) -> Tensor:
        return _detection_evaluate(det_, gt_, num_classes, background_label_id, *args)[0]

    if caffe_grad(det, gt):
        return _NoBackward.apply(run, layer, "DetectionEvaluate", det, gt)
    return run(det, gt)


def check_detection_evaluate_shapes(who: str, det: tuple[int, ...], gt: tuple[int, ...]
                                    ) -> None:
    """DetectionEvaluate's Reshape CHECKs on its legacy num/channels/width, as ShapeError."""
    for k, (shape, width, what) in enumerate(((det, 7, "detections"), (gt, 8, "ground truth"))):
        if len(shape) != 4 or shape[0] != 1 or shape[1] != 1 or shape[3] != width:
            raise ShapeError(f"{who}: bottom {k} ({what}) of shape {list(shape)}; allowed: "
                             f"(1, 1, rows, {width}) (Caffe: CHECK_EQ(bottom[{k}]->num(), 1), "
                             f"channels() 1, width() {width})")


def detection_evaluate_sized(det: Tensor, gt: Tensor, num_classes: int,
                             background_label_id: int, overlap_threshold: float,
                             evaluate_difficult_gt: bool, layer: str,
                             sizes: List[Tuple[int, int]],
                             resize: Optional[Tuple[int, int, int, int, int]], count: int
                             ) -> Tuple[Tensor, int]:
    """detection_evaluate with name_size_file's image sizes: the boxes of the `count`-th
    image with detections (counting on across calls, from 0 again after the last size) are
    scaled to its (height, width) as OutputBBox does (undoing `resize`, the layer's
    resize_param) and overlap in pixels (JaccardOverlap unnormalized).  Returns the top
    and the next count."""
    _refuse_export(layer, "DetectionEvaluate")
    return _eager_sized(det, gt, num_classes, background_label_id, overlap_threshold,
                        evaluate_difficult_gt, layer, sizes, resize, count)


@torch.compiler.disable  # torch.compile runs it as it is (its loops are data-dependent)
def _eager_sized(det: Tensor, gt: Tensor, num_classes: int, background_label_id: int,
                 overlap_threshold: float, evaluate_difficult_gt: bool, layer: str,
                 sizes: List[Tuple[int, int]], resize: Optional[Tuple[int, int, int, int, int]],
                 count: int) -> Tuple[Tensor, int]:
    if det.device.type == "meta":
        return detection_evaluate(det, gt, num_classes, background_label_id,
                                  overlap_threshold, evaluate_difficult_gt, layer), count
    args = (num_classes, background_label_id, overlap_threshold, evaluate_difficult_gt, layer,
            sizes, resize, count)
    box: List[int] = [count]

    def run(det_: Tensor, gt_: Tensor) -> Tensor:
        top, box[0] = _detection_evaluate(det_, gt_, *args)
        return top

    if caffe_grad(det, gt):
        return _NoBackward.apply(run, layer, "DetectionEvaluate", det, gt), box[0]
    return run(det, gt), box[0]


def _detection_evaluate(det: Tensor, gt: Tensor, num_classes: int, background_label_id: int,
                        overlap_threshold: float, evaluate_difficult_gt: bool, layer: str,
                        sizes: Optional[List[Tuple[int, int]]] = None,
                        resize: Optional[Tuple[int, int, int, int, int]] = None,
                        count: int = 0) -> Tuple[Tensor, int]:
    who = f"layer '{layer}' (DetectionEvaluate)"
    check_detection_evaluate_shapes(who, tuple(det.shape), tuple(gt.shape))
    num_pos_classes = num_classes if background_label_id == -1 else num_classes - 1
    # The fork keeps the boxes and scores in NormalizedBBox's float fields, whatever Dtype.
    d = det.reshape(-1, 7).detach().cpu().float()
    g = gt.reshape(-1, 8).detach().cpu().float()
    num_valid = int((d[:, 1] != -1).sum())
    # GetDetectionResults / GetGroundTruth: int() of the stored floats; item -1 is skipped.
    d_item, d_label = d[:, 0].to(torch.int64), d[:, 1].to(torch.int64)
    g_item, g_label = g[:, 0].to(torch.int64), g[:, 1].to(torch.int64)
    d_use = d_item != -1
    g_use = g_item != -1
    for what, use, label in (("ground truth", g_use, g_label), ("detections", d_use, d_label)):
        bad = torch.nonzero(use & (label == background_label_id)).reshape(-1)
        if bad.numel():
            raise InputError(f"{who}: {what} row {int(bad[0])} has the background label "
                             f"{background_label_id} (the fork's CHECK_NE: Found background "
                             "label)")
    g_difficult = g[:, 7] != 0
    # Number of gt per label, over all images.
    num_pos: dict[int, int] = {}
    counted = g_use if evaluate_difficult_gt else g_use & ~g_difficult
    for lab in g_label[g_use].tolist():
        num_pos.setdefault(lab, 0)
    for lab in g_label[counted].tolist():
        num_pos[lab] += 1
    out: list[tuple[float, float, float, float, float]] = [
        (-1.0, float(c), float(num_pos.get(c, 0)), -1.0, -1.0)
        for c in range(num_classes) if c != background_label_id]
    thr = np.float32(overlap_threshold)
    scores = d[:, 2].tolist()  # float32 values, exactly
    for image in sorted(set(d_item[d_use].tolist())):
        in_image = d_use & (d_item == image)
        for lab in sorted(set(d_label[in_image].tolist())):
            if lab == -1:
                continue
            rows = torch.nonzero(in_image & (d_label == lab)).reshape(-1)
            gts = torch.nonzero(g_use & (g_item == image) & (g_label == lab)).reshape(-1)
            if gts.numel() == 0:  # no gt of this label: all false positives, in order
                out += [(float(image), float(lab), scores[r], 0.0, 1.0) for r in rows.tolist()]
                continue
            rows = rows[torch.sort(d[rows, 2], descending=True, stable=True).indices]
            if sizes:
                height, width = sizes[count]
                gbox, gsize = bu.output_bbox(g[gts, 3:7], height, width, resize)
                dbox, dsize = bu.output_bbox(d[rows, 3:7], height, width, resize)
                overlap = bu.jaccard_overlap(dbox, gbox, False, dsize, gsize)
            else:
                overlap = bu.jaccard_overlap(d[rows, 3:7], g[gts, 3:7])  # (rows, gts)
            # The first gt of the largest overlap (a NaN never is: `overlap > overlap_max`).
            best_of = overlap.nan_to_num(nan=-np.inf).max(1)
            visited = [False] * gts.numel()
            difficult = g_difficult[gts].tolist()
            for r, best, omax in zip(rows.tolist(), best_of.indices.tolist(),
                                     best_of.values.numpy()):
                tp, fp = 0.0, 1.0
                if omax >= thr:
                    if evaluate_difficult_gt or not difficult[best]:
                        if not visited[best]:
                            tp, fp = 1.0, 0.0
                            visited[best] = True
                    else:
                        tp, fp = 0.0, 0.0  # matched a difficult gt: neither
                out.append((float(image), float(lab), scores[r], tp, fp))
        if sizes:  # the next image with detections takes the next size
            count = (count + 1) % len(sizes)
    top = torch.zeros([num_pos_classes + num_valid, 5], dtype=det.dtype)
    if out:  # rows whose item is -1 but label is not stay zero, as Reshape counted them
        top[:len(out)] = torch.tensor(out, dtype=det.dtype)
    return top.to(det.device).reshape(1, 1, -1, 5), count


@torch.fx.wrap
def detection_output_image(loc: Tensor, conf: Tensor, prior: Tensor, image: Tensor,
                           num_classes: int, share_location: bool, background_label_id: int,
                           nms_threshold: float, top_k: int, eta: float, keep_top_k: int,
                           confidence_threshold: float, code_type: int,
                           variance_encoded_in_target: bool, layer: str) -> Tensor:
    """detection_output of a layer with the fourth bottom, the image, which the fork reads
    only to visualize."""
    return detection_output(loc, conf, prior, num_classes, share_location,
                            background_label_id, nms_threshold, top_k, eta, keep_top_k,
                            confidence_threshold, code_type, variance_encoded_in_target, layer)

