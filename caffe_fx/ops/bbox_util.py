"""Box arithmetic of SSD (weiliu89/caffe, branch ssd: src/caffe/util/bbox_util.cpp).

Shared by DetectionOutput, DetectionEvaluate and MultiBoxLoss: reading the prior blob
(GetPriorBBoxes), decoding and encoding location predictions (DecodeBBox, EncodeBBox) for
every PriorBoxParameter.CodeType, BBoxSize, JaccardOverlap on normalized boxes and the
greedy NMS of ApplyNMSFast (score threshold, top_k, eta's adaptive threshold).  Boxes are
float32 tensors [..., 4] of [xmin, ymin, xmax, ymax]; the operations are the fork's
element-wise float arithmetic in its order, so equal to its CPU code up to rounding
(exp/log to the last ulp of the C library; no sums here, which torch would order otherwise).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

# PriorBoxParameter.CodeType (caffe_pb2.PriorBoxParameter.CORNER, ...): literal ints so
# that this module imports without the generated proto.
CORNER = 1
CENTER_SIZE = 2
CORNER_SIZE = 3
CODE_TYPES = {CORNER: "CORNER", CENTER_SIZE: "CENTER_SIZE", CORNER_SIZE: "CORNER_SIZE"}


def prior_boxes(prior: Tensor, num_priors: int = -1) -> Tuple[Tensor, Tensor]:
    """GetPriorBBoxes: PriorBox's top (1, 2, P * 4) as (boxes [P, 4], variances [P, 4]).

    The fork reads the blob flat: the first P * 4 values are the boxes, the next P * 4 the
    variances (only the first item of the batch is used, whatever its num).  num_priors:
    P, by default the blob's height / 4."""
    if num_priors < 0:
        num_priors = prior.shape[2] // 4
    flat = prior.reshape(-1)
    boxes = flat[:num_priors * 4].reshape(num_priors, 4)
    variances = flat[num_priors * 4:num_priors * 8].reshape(num_priors, 4)
    return boxes, variances


def bbox_size(boxes: Tensor, normalized: bool = True) -> Tensor:
    """BBoxSize: width * height ((w + 1) * (h + 1) unnormalized), 0 where xmax < xmin or
    ymax < ymin."""
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    if not normalized:
        w, h = w + 1, h + 1
    invalid = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    return torch.where(invalid, torch.zeros_like(w), w * h)


def jaccard_overlap(a: Tensor, b: Tensor, normalized: bool = True,
                    size_a: Tensor | None = None, size_b: Tensor | None = None) -> Tensor:
    """JaccardOverlap(NormalizedBBox, NormalizedBBox) of every pair: a [..., A, 4] and
    b [..., B, 4] give [..., A, B].

    As the fork: IntersectBBox gives [0, 0, 0, 0] when the boxes are apart (so that
    unnormalized, apart boxes still have an intersection of 1 x 1), the overlap is 0 unless
    the intersection's width and height are > 0, and the sizes are BBoxSize's normalized
    ones even when `normalized` is False, unless given (`size_a` [..., A], `size_b`
    [..., B]: the size a NormalizedBBox stores, as ScaleBBox sets it)."""
    ax1, ay1, ax2, ay2 = (t.contiguous().unsqueeze(-1) for t in a.unbind(-1))
    bx1, by1, bx2, by2 = (t.contiguous().unsqueeze(-2) for t in b.unbind(-1))
    apart = (bx1 > ax2) | (bx2 < ax1) | (by1 > ay2) | (by2 < ay1)
    iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).masked_fill(apart, 0.0)
    ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).masked_fill(apart, 0.0)
    if not normalized:
        iw, ih = iw + 1, ih + 1
    inter = iw * ih
    sa = (bbox_size(a) if size_a is None else size_a).unsqueeze(-1)
    sb = (bbox_size(b) if size_b is None else size_b).unsqueeze(-2)
    overlap = inter / ((sa + sb) - inter)
    return overlap.masked_fill(~((iw > 0) & (ih > 0)), 0.0)


def _prior_geometry(priors: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Prior width, height and centre as DecodeBBox/EncodeBBox compute them in float
    ((xmin + xmax) / 2. is exact in float)."""
    pw = priors[..., 2] - priors[..., 0]
    ph = priors[..., 3] - priors[..., 1]
    pcx = (priors[..., 0] + priors[..., 2]) / 2
    pcy = (priors[..., 1] + priors[..., 3]) / 2
    return pw, ph, pcx, pcy


def decode_boxes(loc: Tensor, priors: Tensor, variances: Tensor, code_type: int,
                 variance_encoded_in_target: bool, clip: bool = False) -> Tensor:
    """DecodeBBox for every box: loc [..., P, 4] (the predicted offsets) against priors and
    variances [P, 4] (broadcast over the leading axes) to [..., P, 4] boxes.

    CENTER_SIZE and CORNER_SIZE need priors of positive width and height (the fork
    CHECKs it); the caller checks, as the values are data.  `clip` clamps to [0, 1]
    (ClipBBox; DetectionOutput does not clip)."""
    v = [variances[..., i] for i in range(4)]
    p = [priors[..., i] for i in range(4)]
    t = [loc[..., i] for i in range(4)]
    if code_type == CORNER:
        if variance_encoded_in_target:
            out = [p[i] + t[i] for i in range(4)]
        else:
            out = [p[i] + v[i] * t[i] for i in range(4)]
    elif code_type == CENTER_SIZE:
        pw, ph, pcx, pcy = _prior_geometry(priors)
        if variance_encoded_in_target:
            cx = t[0] * pw + pcx
            cy = t[1] * ph + pcy
            w = torch.exp(t[2]) * pw
            h = torch.exp(t[3]) * ph
        else:
            cx = v[0] * t[0] * pw + pcx
            cy = v[1] * t[1] * ph + pcy
            w = torch.exp(v[2] * t[2]) * pw
            h = torch.exp(v[3] * t[3]) * ph
        # center - width / 2. is double arithmetic stored in float.
        cx64, cy64, w64, h64 = cx.double(), cy.double(), w.double(), h.double()
        out = [(cx64 - w64 / 2).float(), (cy64 - h64 / 2).float(),
               (cx64 + w64 / 2).float(), (cy64 + h64 / 2).float()]
    elif code_type == CORNER_SIZE:
        pw, ph, _, _ = _prior_geometry(priors)
        size = [pw, ph, pw, ph]
        if variance_encoded_in_target:
            out = [p[i] + t[i] * size[i] for i in range(4)]
        else:
            out = [p[i] + v[i] * t[i] * size[i] for i in range(4)]
    else:
        raise ValueError(f"code_type {code_type}; allowed: {CODE_TYPES}")
    boxes = torch.stack(out, -1)
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    return boxes


def encode_boxes(boxes: Tensor, priors: Tensor, variances: Tensor, code_type: int,
                 encode_variance_in_target: bool) -> Tensor:
    """EncodeBBox for every box: ground-truth boxes [..., P, 4] matched to priors [P, 4]
    as the regression targets [..., P, 4] (the inverse of decode_boxes).  CENTER_SIZE
    needs boxes and priors of positive width and height (the fork CHECKs them)."""
    v = [variances[..., i] for i in range(4)]
    p = [priors[..., i] for i in range(4)]
    b = [boxes[..., i] for i in range(4)]
    if code_type == CORNER:
        if encode_variance_in_target:
            out = [b[i] - p[i] for i in range(4)]
        else:
            out = [(b[i] - p[i]) / v[i] for i in range(4)]
    elif code_type == CENTER_SIZE:
        pw, ph, pcx, pcy = _prior_geometry(priors)
        bw, bh, bcx, bcy = _prior_geometry(boxes)
        out = [(bcx - pcx) / pw, (bcy - pcy) / ph, torch.log(bw / pw), torch.log(bh / ph)]
        if not encode_variance_in_target:
            out = [out[i] / v[i] for i in range(4)]
    elif code_type == CORNER_SIZE:
        pw, ph, _, _ = _prior_geometry(priors)
        size = [pw, ph, pw, ph]
        if encode_variance_in_target:
            out = [(b[i] - p[i]) / size[i] for i in range(4)]
        else:
            out = [(b[i] - p[i]) / size[i] / v[i] for i in range(4)]
    else:
        raise ValueError(f"code_type {code_type}; allowed: {CODE_TYPES}")
    return torch.stack(out, -1)


def max_score_index(scores: Tensor, threshold: float, top_k: int = -1) -> Tensor:
    """GetMaxScoreIndex: the indices of scores > threshold, by descending score (a stable
    sort: equal scores keep index order), the first top_k of them when top_k > -1."""
    idx = torch.nonzero(scores > threshold).reshape(-1)
    order = torch.sort(scores[idx], descending=True, stable=True).indices
    idx = idx[order]
    if top_k > -1:
        idx = idx[:top_k]
    return idx


def nms_fast(boxes: Tensor, scores: Tensor, score_threshold: float, nms_threshold: float,
             eta: float = 1.0, top_k: int = -1) -> Tensor:
    """ApplyNMSFast: greedy NMS of boxes [K, 4] with scores [K]; the kept indices in the
    order kept (descending score).

    Candidates are max_score_index(scores, score_threshold, top_k); each is kept when its
    overlap with every box kept before it is <= the adaptive threshold (a NaN overlap
    suppresses), which starts at nms_threshold and is multiplied by eta after each keep
    while eta < 1 and it is > 0.5.  Thresholds are float32, as the fork's floats.

    The same decisions, computed in groups: each candidate carries the largest overlap with
    the boxes kept so far (NaN once any is NaN), so it is kept iff that is <= the threshold
    at its turn; one jaccard_overlap call gives the rows of the next few candidates still in
    the running against every later one."""
    order = max_score_index(scores, score_threshold, top_k)
    n = order.numel()
    if n == 0:
        return order
    cand = boxes[order].detach().cpu()
    thr = np.float32(nms_threshold)
    eta32 = np.float32(eta)
    max_overlap = np.full(n, -np.inf, dtype=np.float32)
    kept: list[int] = []
    pos = 0
    while pos < n:
        # Overlaps only grow and the threshold only falls: who fails now fails for good.
        alive = np.nonzero(max_overlap[pos:] <= thr)[0] + pos
        if alive.size == 0:
            break
        # Groups small enough that torch keeps to one thread (its grain is 32768).
        group = alive[:max(8, _NMS_GROUP_ELEMENTS // (n - pos))]
        base = int(group[0])
        rows = jaccard_overlap(cand[torch.from_numpy(group)], cand[base:]).numpy()
        for k, i in enumerate(group.tolist()):
            if not max_overlap[i] <= thr:
                continue
            kept.append(i)
            later = max_overlap[i + 1:]
            np.maximum(later, rows[k, i + 1 - base:], out=later)  # NaN stays NaN
            if eta32 < 1 and thr > 0.5:
                thr = np.float32(thr * eta32)
        pos = int(group[-1]) + 1
    return order[torch.tensor(kept, dtype=torch.long, device=order.device)]


_NMS_GROUP_ELEMENTS = 16384


# ResizeParameter.Resize_mode
WARP = 1
FIT_SMALL_SIZE = 2
FIT_LARGE_SIZE_AND_PAD = 3


def _scale_bbox(boxes: Tensor, height: int, width: int) -> Tuple[Tensor, Tensor]:
    """ScaleBBox: coordinates times the image size; the size it stores is BBoxSize's
    unnormalized (w + 1) (h + 1) unless the size is 1 x 1."""
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype,
                         device=boxes.device)
    out = boxes * scale
    return out, bbox_size(out, normalized=not (width > 1 or height > 1))


def _project_bbox(src: Tuple[float, float, float, float], boxes: Tensor) -> Tensor:
    """ProjectBBox into OutputBBox's temp_bbox: a box apart from `src` stays as it was
    (the early return), any other becomes its clipped projection into src's frame."""
    f32 = torch.float32
    x1, y1, x2, y2 = (torch.tensor(v, dtype=f32) for v in src)
    apart = ((boxes[:, 0] >= x2) | (boxes[:, 2] <= x1)
             | (boxes[:, 1] >= y2) | (boxes[:, 3] <= y1))
    sw, sh = x2 - x1, y2 - y1
    proj = torch.stack([(boxes[:, 0] - x1) / sw, (boxes[:, 1] - y1) / sh,
                        (boxes[:, 2] - x1) / sw, (boxes[:, 3] - y1) / sh], 1).clamp(0.0, 1.0)
    return torch.where(apart[:, None], boxes, proj)


def output_bbox(boxes: Tensor, height: int, width: int,
                resize: Tuple[int, int, int, int, int] | None) -> Tuple[Tensor, Tensor]:
    """OutputBBox: normalized boxes [K, 4] to pixels of an image of height x width, undoing
    the transform's resize_param (`resize` = (resize_mode, height, width, height_scale,
    width_scale), None when absent); returns the boxes and the sizes they store."""
    if resize is None or resize[0] == WARP:
        return _scale_bbox(boxes.clamp(0.0, 1.0), height, width)
    f32 = np.float32
    mode, r_h, r_w, h_scale, w_scale = resize
    if mode == FIT_LARGE_SIZE_AND_PAD:
        rh, rw = f32(r_h), f32(r_w)
        resize_aspect = f32(rw / rh)
        aspect = f32(f32(width) / f32(height))
        if aspect > resize_aspect:
            pad = f32((rh - f32(rw / aspect)) / f32(2))
            src = (0.0, float(f32(pad / rh)), 1.0, float(f32(1.0 - float(f32(pad / rh)))))
        else:
            pad = f32((rw - f32(rh * aspect)) / f32(2))
            src = (float(f32(pad / rw)), 0.0, float(f32(1.0 - float(f32(pad / rw)))), 1.0)
        return _scale_bbox(_project_bbox(src, boxes).clamp(0.0, 1.0), height, width)
    if mode == FIT_SMALL_SIZE:
        if h_scale == 0 or w_scale == 0:
            return _scale_bbox(boxes.clamp(0.0, 1.0), height, width)
        out, _ = _scale_bbox(boxes, h_scale, w_scale)
        # ClipBBox(bbox, height, width): to the image, the size normalized (no + 1).
        hi = torch.tensor([width, height, width, height], dtype=out.dtype)
        out = torch.maximum(torch.minimum(out, hi), torch.zeros_like(out))
        return out, bbox_size(out)
    raise ValueError(f"resize_mode {mode}; allowed: WARP, FIT_SMALL_SIZE, "
                     "FIT_LARGE_SIZE_AND_PAD")
