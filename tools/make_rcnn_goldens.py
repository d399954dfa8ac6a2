"""Goldens for the R-CNN forks' layers from ppengtang/caffe (the OICR fork), run for real.

    python tools/make_rcnn_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle with its `oicr` overlay (CAFFE_ORACLE_FORK=oicr):
WeightedSoftmaxWithLoss, GlobalSumPooling, MulticlassCrossEntropyLoss,
MulticlassSigmoidCrossEntropyLoss and Dropout's scale_train have CPU code there.
SmoothL1Loss's R-CNN forms have none in any fork we can run (Forward_cpu is
NOT_IMPLEMENTED): tests/layers/test_smooth_l1_loss.py models the .cu in NumPy instead.  The
2-bottom form, the same in every fork, is also checked against weiliu89/caffe's (SSD) CPU
code (CAFFE_ORACLE_FORK=ssd), which takes exactly 2 bottoms.

Each case is one layer fed from legacy `input:` fields (the fork has no Input layer) with
`force_backward: true`, seeded inputs and, for non-loss tops, seeded top diffs; pycaffe's
forward then backward.  Writes tests/golden/rcnn_layers/<case>.npz with `prototxt`,
`phase`, `layer` (the type), `input/<blob>`, `topdiff/<blob>`, `data/<blob>` (every top)
and `diff/<blob>` (every input Caffe differentiates; labels and weights get none).
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._oracle_goldens import ForkCase as Case, Gen, generate, make_fork_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "rcnn_layers"
make = partial(make_fork_golden, folder=GOLDEN, fork="oicr")


# ---------------------------------------------------------------- inputs

def normal(*shape: int, scale: float = 1.0) -> Gen:
    return lambda r: r.randn(*shape) * scale


def labels(n: int, classes: int, *, ignore: int | None = None, shape: tuple[int, ...] = ()
           ) -> Gen:
    def gen(r: np.random.RandomState) -> np.ndarray:
        lab = r.randint(0, classes, size=n).astype(np.float32)
        if ignore is not None:
            lab[::3] = ignore
        return lab.reshape(shape or (n,))
    return gen


def weights(n: int, zeros: tuple[int, ...] = (), tiny: tuple[int, ...] = ()) -> Gen:
    def gen(r: np.random.RandomState) -> np.ndarray:
        w = r.uniform(0.1, 2.0, size=n)
        w[list(zeros)] = 0.0
        w[list(tiny)] = 1e-13  # > 0 but not > 1e-12: not counted by VALID
        return w
    return gen


def const(value: np.ndarray) -> Gen:
    return lambda r: np.asarray(value, dtype=np.float32)


def probs(*shape: int) -> Gen:
    return lambda r: 1 / (1 + np.exp(-2 * r.randn(*shape)))


def binary(*shape: int) -> Gen:
    return lambda r: (r.rand(*shape) < 0.5).astype(np.float32)


# ---------------------------------------------------------------- cases

WSL = "WeightedSoftmaxWithLoss"
_WSL_IN = {"data": normal(6, 4, scale=2.0), "label": labels(6, 4),
           "weight": weights(6, zeros=(1,), tiny=(4,))}
_WSL_IGN = {"data": normal(6, 4, scale=2.0), "label": labels(6, 4, ignore=2),
            "weight": weights(6, zeros=(2,))}
_WSL_BODY = 'bottom: "data" bottom: "label" bottom: "weight" top: "loss"'

MCE = "MulticlassCrossEntropyLoss"
MSCE = "MulticlassSigmoidCrossEntropyLoss"
_LOSS2 = 'bottom: "data" bottom: "label" top: "loss"'

_CLAMP_P = np.array([[0.0, 1e-12, 0.3, 0.7], [1e-10, 0.999, 0.5, 0.2]])
_CLAMP_Y = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])

CASES = [
    Case("wsl_valid", WSL, _WSL_BODY, _WSL_IN, ("data",)),
    Case("wsl_ignore", WSL, _WSL_BODY + " loss_param { ignore_label: 2 }", _WSL_IGN, ("data",)),
    Case("wsl_full", WSL, _WSL_BODY + " loss_param { ignore_label: 2 normalization: FULL }",
         _WSL_IGN, ("data",)),
    Case("wsl_batch_size", WSL, _WSL_BODY + " loss_param { normalize: false }", _WSL_IN,
         ("data",)),
    Case("wsl_none", WSL, _WSL_BODY + " loss_param { normalization: NONE }", _WSL_IN,
         ("data",)),
    Case("wsl_zero_weights", WSL, _WSL_BODY,
         {"data": normal(4, 3), "label": labels(4, 3), "weight": const(np.zeros(4))},
         ("data",)),
    Case("wsl_flt_min", WSL, _WSL_BODY,
         {"data": const([[0.0, 200.0, 1.0], [1.0, 2.0, 3.0]]), "label": const([0.0, 2.0]),
          "weight": const([1.5, 0.5])}, ("data",)),
    Case("wsl_spatial", WSL, _WSL_BODY + " loss_param { ignore_label: 1 }",
         {"data": normal(2, 3, 2, 2), "label": labels(8, 3, shape=(2, 1, 2, 2)),
          "weight": const([0.5, 2.0])}, ("data",)),
    Case("wsl_loss_weight", WSL, _WSL_BODY + " loss_weight: 2.5", _WSL_IN, ("data",)),
    Case("gsp_4d", "GlobalSumPooling", 'bottom: "data" top: "out"',
         {"data": normal(3, 4, 2, 2)}, ("data",), topdiffs={"out": (1, 4, 2, 2)}),
    Case("gsp_2d", "GlobalSumPooling", 'bottom: "data" top: "out"',
         {"data": normal(5, 3)}, ("data",), topdiffs={"out": (1, 3)}),
    Case("mce_basic", MCE, _LOSS2, {"data": probs(4, 5), "label": binary(4, 5)}, ("data",)),
    Case("mce_soft_4d", MCE, _LOSS2 + " loss_weight: 0.5",
         {"data": probs(3, 4, 1, 1), "label": lambda r: r.rand(3, 4)}, ("data",)),
    Case("mce_clamp_low", MCE, _LOSS2, {"data": const(_CLAMP_P), "label": const(_CLAMP_Y)},
         ("data",)),
    Case("mce_clamp_one_label0", MCE, _LOSS2,  # p = 1, y = 0: loss inf, diff inf
         {"data": const([[1.0, 0.4], [0.6, 0.3]]), "label": const([[0.0, 1.0], [0.0, 1.0]])},
         ("data",)),
    Case("mce_clamp_one_label1", MCE, _LOSS2,  # p = 1, y = 1: 0 * log(0) = nan
         {"data": const([[1.0, 0.4], [0.6, 0.3]]), "label": const([[1.0, 1.0], [0.0, 1.0]])},
         ("data",)),
    Case("msce_basic", MSCE, _LOSS2, {"data": normal(4, 5, scale=3.0), "label": binary(4, 5)},
         ("data",)),
    Case("msce_overflow", MSCE, _LOSS2 + " loss_weight: 2",  # exp(100) overflows float
         {"data": const([[-100.0, 0.5, 3.0], [2.0, -1.0, 0.0]]),
          "label": const([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])}, ("data",)),
    Case("sl1_two_bottoms_ssd", "SmoothL1Loss", 'bottom: "pred" bottom: "target" top: "loss"',
         {"pred": normal(4, 6, scale=1.5), "target": normal(4, 6, scale=1.5)},
         ("pred", "target"), fork="ssd"),
    Case("sl1_two_bottoms_4d_ssd", "SmoothL1Loss",
         'bottom: "pred" bottom: "target" top: "loss" loss_weight: 2',
         {"pred": normal(2, 3, 2, 2, scale=1.5), "target": normal(2, 3, 2, 2, scale=1.5)},
         ("pred", "target"), fork="ssd"),
    Case("dropout_unscaled_test", "Dropout",
         'bottom: "data" top: "out" dropout_param { dropout_ratio: 0.3 scale_train: false }',
         {"data": normal(2, 3, 4)}, ("data",), topdiffs={"out": (2, 3, 4)}),
    Case("dropout_unscaled_test_half", "Dropout",
         'bottom: "data" top: "out" dropout_param { scale_train: false }',
         {"data": const(np.full((2, 3), 4.0))}, ("data",), topdiffs={"out": (2, 3)}),
    Case("dropout_scaled_test", "Dropout",
         'bottom: "data" top: "out" dropout_param { dropout_ratio: 0.3 scale_train: true }',
         {"data": normal(2, 3, 4)}, ("data",), topdiffs={"out": (2, 3, 4)}),
    Case("dropout_unscaled_train", "Dropout",
         'bottom: "data" top: "out" dropout_param { dropout_ratio: 0.4 scale_train: false }',
         {"data": normal(4, 50)}, ("data",), phase="train", topdiffs={"out": (4, 50)}),
]


if __name__ == "__main__":
    generate(CASES, make)
