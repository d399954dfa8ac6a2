"""`utils.cython_bbox` of an OICR checkout in NumPy, for where lib/utils/bbox.pyx is not built.

examples/oicr: port.py copies this file to lib/utils/cython_bbox.py when no compiled
cython_bbox module is there.  Mirrors bbox.pyx of rbgirshick/fast-rcnn (Sergey Karayev):
float64 boxes (x1, y1, x2, y2) in pixels, inclusive, so a box is x2 - x1 + 1 wide.
"""
from __future__ import annotations

import numpy as np


def bbox_overlaps(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """(N, K) intersection over union of boxes (N, 4) with query_boxes (K, 4); 0 where
    they do not overlap (bbox.pyx's loops, vectorised, in float64 as its DTYPE_t)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    query = np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4)
    area = ((query[:, 2] - query[:, 0] + 1) * (query[:, 3] - query[:, 1] + 1))[np.newaxis, :]
    iw = (np.minimum(boxes[:, 2:3], query[np.newaxis, :, 2])
          - np.maximum(boxes[:, 0:1], query[np.newaxis, :, 0]) + 1)
    ih = (np.minimum(boxes[:, 3:4], query[np.newaxis, :, 3])
          - np.maximum(boxes[:, 1:2], query[np.newaxis, :, 1]) + 1)
    own = ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1))[:, np.newaxis]
    inter = iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (own + area - inter)
    return np.where((iw > 0) & (ih > 0), iou, 0.0)
