"""`utils.cython_nms` of an OICR checkout in NumPy, for where lib/utils/nms.pyx is not built.

examples/oicr: port.py copies this file to lib/utils/cython_nms.py when no compiled
cython_nms module is there.  Mirrors nms.pyx of rbgirshick/fast-rcnn (Ross Girshick):
greedy non-maximum suppression in float32, highest score first, a box suppressed when its
overlap with a kept box is >= thresh (nms.py, the pure-Python version, keeps <= thresh).
"""
from __future__ import annotations

import numpy as np


def nms(dets: np.ndarray, thresh: float) -> list[int]:
    """Indices of the rows of dets (N, 5: x1, y1, x2, y2, score) that survive, in the
    order nms.pyx keeps them (descending score; ties as argsort()[::-1] orders them)."""
    dets = np.asarray(dets, dtype=np.float32)
    if dets.shape[0] == 0:
        return []
    x1, y1, x2, y2, scores = (dets[:, k] for k in range(5))
    one = np.float32(1)
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = scores.argsort()[::-1]
    suppressed = np.zeros(dets.shape[0], dtype=bool)
    keep: list[int] = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        rest = order[pos + 1:]
        rest = rest[~suppressed[rest]]
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
                       + one)
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
                       + one)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[ovr >= np.float32(thresh)]] = True
    return keep
