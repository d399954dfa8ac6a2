"""Goldens for Fast R-CNN's ROIPooling from ppengtang/caffe (the OICR fork), run for real.

    python tools/make_roi_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle with its `oicr` overlay (CAFFE_ORACLE_FORK=oicr),
whose roi_pooling_layer.cpp (Forward_cpu, Backward_cpu) is Fast R-CNN's.  Each case is one
ROIPooling layer fed from legacy `input:` fields (the fork has no Input layer) with
`force_backward: true` (patch 0002 lets it skip the roi bottom) and a seeded top diff;
pycaffe's forward then backward.  Writes tests/golden/roi/<case>.npz with `prototxt`,
`layer`, `input/data`, `input/rois`, `topdiff/pool`, `data/pool` and `diff/data`.

PSROIPooling has no CPU code in any fork (the overlay aborts): tests/layers/
test_psroi_pooling.py checks it against a NumPy model of its .cu instead.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import run_oracle  # noqa: E402
from tools._oracle_goldens import generate, write_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "roi"
Gen = Callable[[np.random.RandomState], np.ndarray]


@dataclass(frozen=True)
class Case:
    name: str
    features: Gen  # N x C x H x W
    rois: Gen  # R x 5
    pooled: tuple[int, int]
    spatial_scale: float | None = None  # None: the default (1)


def prototxt(case: Case, data: tuple[int, ...], rois: tuple[int, ...]) -> str:
    scale = "" if case.spatial_scale is None else f" spatial_scale: {case.spatial_scale!r}"
    head = f'name: "{case.name}"\nforce_backward: true\n'
    for blob, shape in (("data", data), ("rois", rois)):
        head += f'input: "{blob}"\ninput_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n'
    return head + (
        f'layer {{ name: "pool" type: "ROIPooling" bottom: "data" bottom: "rois" top: "pool" '
        f"roi_pooling_param {{ pooled_h: {case.pooled[0]} pooled_w: {case.pooled[1]}{scale} "
        "} }\n")


def _seed(name: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % (2 ** 31)


def make(case: Case) -> str:
    r = np.random.RandomState(_seed(case.name))
    data = np.ascontiguousarray(case.features(r), dtype=np.float32)
    rois = np.ascontiguousarray(case.rois(r), dtype=np.float32)
    text = prototxt(case, data.shape, rois.shape)
    top = (rois.shape[0], data.shape[1], *case.pooled)
    topdiff = r.standard_normal(top).astype(np.float32)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    net = GOLDEN / f".{case.name}.prototxt"
    net.write_text(text)
    try:
        got, _ = run_oracle(net, {"data": data, "rois": rois}, backward=True,
                            topdiffs={"pool": topdiff}, workdir=GOLDEN)
    finally:
        net.unlink()
    record = {
        "prototxt": np.array(text), "layer": np.array("ROIPooling"),
        "input/data": data, "input/rois": rois, "topdiff/pool": topdiff,
        "data/pool": got["data/pool"], "diff/data": got["diff/data"],
    }
    return write_golden(GOLDEN, case.name, record)


# ---------------------------------------------------------------- inputs

def normal(*shape: int) -> Gen:
    return lambda r: r.randn(*shape)


def relu(*shape: int) -> Gen:
    """Post-ReLU features: about half zeros, so bins tie and the first maximum counts."""
    return lambda r: np.maximum(r.randn(*shape), 0.0)


def const(rows: list[list[float]]) -> Gen:
    return lambda r: np.asarray(rows, dtype=np.float32)


def boxes(n: int, batch: int, width: float, height: float, lo: float = 0.0) -> Gen:
    """n rois [b, x1, y1, x2, y2] inside (lo .. width, lo .. height), image coordinates."""
    def gen(r: np.random.RandomState) -> np.ndarray:
        x = np.sort(r.uniform(lo, width, (n, 2)), axis=1)
        y = np.sort(r.uniform(lo, height, (n, 2)), axis=1)
        b = r.randint(0, batch, (n, 1))
        return np.concatenate([b, x[:, :1], y[:, :1], x[:, 1:], y[:, 1:]], axis=1)
    return gen


def special(*shape: int) -> Gen:
    """Negative values, a plane of -inf and a plane of -FLT_MAX (Caffe's start value): a
    bin of these only gives -FLT_MAX with no argmax."""
    def gen(r: np.random.RandomState) -> np.ndarray:
        x = -np.abs(r.randn(*shape)) - 1.0
        x[0, 1] = -np.inf
        x[0, 2] = -np.finfo(np.float32).max
        x[0, 3, 1:3, 1:3] = -np.inf
        return x
    return gen


# x.5 after scaling: round() goes away from zero (numpy's np.round would go to even).
_HALVES = [[0, 0.5, 1.5, 2.5, 3.5], [0, -0.5, -1.5, 4.5, 5.5], [1, 2.5, 0.5, 6.5, 7.5],
           [1, -2.5, -0.5, 0.5, 1.5], [0, 1.25, 2.75, 5.25, 6.75], [1, 3.5, 3.5, 3.5, 3.5]]
# Malformed and empty: x2 < x1 (Caffe pools it as 1 x 1), zero size, one pixel, fully
# outside the map on each side, straddling every edge, and the whole map and more.
_DEGENERATE = [[0, 5, 5, 2, 2], [0, 3, 4, 3, 4], [1, 0, 0, 0, 0], [1, 9, 7, 9, 7],
               [0, -20, -20, -5, -5], [0, 30, 2, 40, 6], [1, 2, 30, 6, 40],
               [1, -3, -3, 4, 4], [0, 6, 4, 14, 12], [0, -10, -10, 30, 30],
               [1, 5, 5, 2, 9], [0, 12, 1, 11, 2]]

CASES = [
    Case("roi_scale1_2x3", normal(2, 3, 9, 11), boxes(8, 2, 11, 9), (2, 3)),
    Case("roi_vgg_7x7", relu(1, 4, 12, 16), boxes(10, 1, 256, 192), (7, 7), 0.0625),
    Case("roi_half_scale_3x2", normal(2, 3, 10, 12), boxes(9, 2, 24, 20, lo=-6), (3, 2), 0.5),
    Case("roi_third_scale_4x4", normal(2, 2, 8, 9), boxes(7, 2, 30, 27, lo=-3), (4, 4),
         1 / 3),
    Case("roi_outside_5x5", normal(2, 3, 8, 10), boxes(10, 2, 24, 20, lo=-12), (5, 5)),
    Case("roi_degenerate_2x2", normal(2, 3, 8, 10), const(_DEGENERATE), (2, 2)),
    Case("roi_halves_2x3", normal(2, 2, 9, 9), const(_HALVES), (2, 3)),
    Case("roi_halves_scale_3x3", normal(2, 2, 9, 9),
         const([[b, 2 * x1, 2 * y1, 2 * x2, 2 * y2] for b, x1, y1, x2, y2 in _HALVES]), (3, 3),
         0.5),
    Case("roi_ties_relu_7x7", relu(2, 3, 7, 9), boxes(12, 2, 9, 7, lo=-1), (7, 7)),
    Case("roi_constant_3x3", lambda r: np.ones((1, 2, 6, 6)), boxes(4, 1, 6, 6), (3, 3)),
    Case("roi_special_values_2x2", special(1, 4, 5, 5),
         const([[0, 0, 0, 4, 4], [0, 1, 1, 2, 2], [0, 2, 2, 4, 4]]), (2, 2)),
    Case("roi_one_bin_1x1", normal(2, 3, 6, 7), boxes(6, 2, 7, 6), (1, 1)),
    Case("roi_overlapping_4x3", normal(1, 2, 6, 6),  # many rois on one map: diffs add up
         const([[0, 0, 0, 5, 5]] * 3 + [[0, 1, 1, 4, 4], [0, 0, 0, 2, 5]]), (4, 3)),
]


if __name__ == "__main__":
    os.environ["CAFFE_ORACLE_FORK"] = "oicr"
    generate(CASES, make)
