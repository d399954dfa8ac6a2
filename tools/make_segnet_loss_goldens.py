"""Goldens for SegNet's SoftmaxWithLoss class weighting and Dropout sample_weights_test,
from alexgkendall/caffe-segnet, run for real.

    python tools/make_segnet_loss_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle with its `segnet` overlay (CAFFE_ORACLE_FORK=segnet).
Each case is one layer fed from legacy `input:` fields with `force_backward: true`,
seeded inputs and (Dropout) seeded top diffs; pycaffe's forward then backward, the loss
seeded by its loss_weight.  Writes tests/golden/segnet_loss/<case>.npz with `prototxt`,
`phase`, `layer`, `input/<blob>`, `topdiff/<blob>`, `data/<blob>` and `diff/<blob>`
(tools/_oracle_goldens.py make_fork_golden).  `dropout_sample_test` draws the fork's own
mask (Caffe's RNG, which caffe_fx does not replay): its test checks the mask's form only.
`softmax_loss_segnet_camvid` is the loss layer of ../shared/models' SegNet-Tutorial
segnet_train.prototxt as published.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._oracle_goldens import ForkCase as Case, Gen, generate, make_fork_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "segnet_loss"
make = partial(make_fork_golden, folder=GOLDEN, fork="segnet")


def normal(*shape: int, scale: float = 1.0) -> Gen:
    return lambda r: r.randn(*shape) * scale


def labels(classes: int, *shape: int) -> Gen:
    return lambda r: r.randint(0, classes, shape).astype(np.float64)


def const(values: object) -> Gen:
    return lambda r: np.asarray(values, np.float64)


_LOSS = 'bottom: "data" bottom: "label" top: "loss"'
_W4 = " ".join(f"class_weighting: {w}" for w in (0.2595, 1.5, 3.25, 0.7))
_IN = {"data": normal(2, 4, 3, 3, scale=2.0), "label": labels(4, 2, 1, 3, 3)}
_IN_IGN = {"data": normal(2, 4, 3, 3, scale=2.0), "label": labels(5, 2, 1, 3, 3)}  # 4: ignored
_DROP = 'bottom: "data" top: "out"'
SEGNET = ROOT.parent / "shared" / "models" / "alexgkendall+SegNet-Tutorial" / "Models"


def published_loss() -> str:
    """segnet_train.prototxt's own loss layer (CamVid's 11 class weights, ignore_label 11,
    softmax_param engine), its bottoms renamed to the case's inputs."""
    from google.protobuf import text_format

    from caffe_fx.proto import caffe_pb2

    net = text_format.Parse((SEGNET / "segnet_train.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    layer = next(ly for ly in net.layer if ly.name == "loss")
    for name in ("name", "type", "bottom", "top"):
        layer.ClearField(name)
    return _LOSS + " " + text_format.MessageToString(layer, as_one_line=True)


CASES = [
    Case("softmax_loss_plain", "SoftmaxWithLoss", _LOSS, _IN, ("data",)),
    Case("softmax_loss_plain_unnormalized", "SoftmaxWithLoss",  # BVLC's BATCH_SIZE too
         _LOSS + " loss_param { ignore_label: 4 normalize: false }", _IN_IGN, ("data",)),
    Case("softmax_loss_weights_unused", "SoftmaxWithLoss",  # no weight_by_label_freqs
         _LOSS + f" loss_param {{ {_W4} }}", _IN, ("data",)),
    Case("softmax_loss_weighted", "SoftmaxWithLoss",
         _LOSS + f" loss_param {{ weight_by_label_freqs: true {_W4} }}", _IN, ("data",)),
    Case("softmax_loss_weighted_ignore", "SoftmaxWithLoss",
         _LOSS + f" loss_param {{ weight_by_label_freqs: true ignore_label: 4 {_W4} }}",
         _IN_IGN, ("data",)),
    Case("softmax_loss_weighted_unnormalized", "SoftmaxWithLoss",
         _LOSS + f" loss_param {{ weight_by_label_freqs: true ignore_label: 4 normalize: false "
         f"{_W4} }}", _IN_IGN, ("data",)),
    Case("softmax_loss_weighted_normalize_true", "SoftmaxWithLoss",
         _LOSS + f" loss_param {{ weight_by_label_freqs: true normalize: true {_W4} }}", _IN,
         ("data",)),
    Case("softmax_loss_weighted_loss_weight", "SoftmaxWithLoss",
         _LOSS + f" loss_weight: 2.5 loss_param {{ weight_by_label_freqs: true {_W4} }}", _IN,
         ("data",)),
    Case("softmax_loss_weighted_2d", "SoftmaxWithLoss",
         _LOSS + f" loss_param {{ weight_by_label_freqs: true {_W4} }}",
         {"data": normal(6, 4, scale=3.0), "label": labels(4, 6)}, ("data",)),
    Case("softmax_loss_weighted_flt_min", "SoftmaxWithLoss",  # p_label underflows: FLT_MIN
         _LOSS + f" loss_param {{ weight_by_label_freqs: true {_W4} }}",
         {"data": const([[0.0, 200.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0]]),
          "label": const([0.0, 3.0])}, ("data",)),
    Case("softmax_loss_weighted_all_ignored", "SoftmaxWithLoss",  # count 0: 0 / 0
         _LOSS + f" loss_param {{ weight_by_label_freqs: true ignore_label: 2 {_W4} }}",
         {"data": normal(2, 4, 1, 2), "label": const(np.full((2, 1, 1, 2), 2.0))},
         ("data",)),
    *([Case("softmax_loss_segnet_camvid", "SoftmaxWithLoss", published_loss(),
            {"data": normal(2, 11, 4, 5, scale=2.0), "label": labels(12, 2, 1, 4, 5)},
            ("data",))] if SEGNET.is_dir() else []),  # ../shared/models is there
    Case("dropout_test_plain", "Dropout", _DROP + " dropout_param { dropout_ratio: 0.3 }",
         {"data": normal(2, 3, 4, 4)}, ("data",), {"out": (2, 3, 4, 4)}),
    Case("dropout_sample_test_ratio0", "Dropout",
         _DROP + " dropout_param { dropout_ratio: 0 sample_weights_test: true }",
         {"data": normal(2, 3, 4, 4)}, ("data",), {"out": (2, 3, 4, 4)}),
    Case("dropout_sample_test", "Dropout",
         _DROP + " dropout_param { dropout_ratio: 0.4 sample_weights_test: true }",
         {"data": normal(2, 4, 8, 8)}, ("data",), {"out": (2, 4, 8, 8)}),
    Case("dropout_sample_test_false", "Dropout",
         _DROP + " dropout_param { dropout_ratio: 0.4 sample_weights_test: false }",
         {"data": normal(2, 3, 4, 4)}, ("data",), {"out": (2, 3, 4, 4)}),
]

if __name__ == "__main__":
    generate(CASES, make)
