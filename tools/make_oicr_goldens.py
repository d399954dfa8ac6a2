"""Goldens for OICR's VGG_M train net, run for real in ppengtang/caffe (the OICR fork).

    python tools/make_oicr_goldens.py

Needs root, ../shared/caffe-oracle with its `oicr` overlay (CAFFE_ORACLE_FORK=oicr) and
../shared/models/ppengtang+oicr/models/VGG_M/{train,solver}.prototxt.

The net is OICR's own train.prototxt with three changes, made by `oracle_net` (the test
derives the same net from ../shared; nothing of the author's is stored here):
  * its Python layers become legacy `input:` blobs (the fork has no Input layer):
    RoIDataLayer's tops (data, rois, labels) and each OICRLayer's tops (labels_ic*,
    cls_loss_weights*).  OICR's own layer code is Python 2 and imports a Cython module,
    so the oracle (Python 3.9) cannot run it; `oicr_targets` is a NumPy port of its
    forward (oicr_layer/layer.py with utils/bbox.pyx's bbox_overlaps), applied to the
    midn_prob / ic_prob / ic_prob1 that the fork computes at iteration 0.
  * drop6 and drop7 get dropout_ratio 0: Caffe's and torch's random masks cannot agree,
    and with ratio 0 both are the identity (Caffe's scale 1 / (1 - 0) and an all-ones mask).
  * a small minibatch: one 3 x 64 x 96 image and 8 rois.

Oracle runs: `forward --phase train --randomize SEED --backward` (every blob, every param,
every diff at iteration 0; --save-weights keeps those weights for the next run), then
`solve` with OICR's solver.prototxt (base_lr, momentum, weight_decay, iter_size 2, its
step policy) from those weights for ITERS iterations, the same minibatch every iteration.

VGG_M's fc6 alone holds 75M weights, so the golden keeps, for every array, its float64
sum, L2 norm and largest magnitude, and its values at up to SAMPLES fixed flat indices
(the whole array when it is small; the index of its largest magnitude always among them).
The weights themselves are not stored: `randomized_weights` redraws the oracle's
--randomize (oracle.py's randomize(): numpy RandomState(SEED), the layers in net order),
and the golden's samples of param/<layer>/<i> check that the draw is the same.

Writes tests/golden/oicr/vgg_m_train.npz: `input/<blob>` (full), `seed`, `iters`, and for
each recorded array KEY (data/<blob>, diff/<blob>, param/<layer>/<i>, pdiff/<layer>/<i>,
step/param/<layer>/<i> after the solver's steps, step/delta/<layer>/<i> = that minus
param/<layer>/<i>, in float64): KEY/idx, KEY/val, KEY/stats (sum, norm, max |x|),
KEY/shape; `step/loss` and `step/lr` per iteration (the loss of each step's last forward);
`full/data/<blob>`, whole blobs (see FULL).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from google.protobuf import text_format

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from caffe_fx.proto import caffe_pb2  # noqa: E402
from tests.nets.oracle import MODELS, ORACLE, oracle_unavailable  # noqa: E402
from tools._oracle_goldens import write_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "oicr"
VGG_M = MODELS / "ppengtang+oicr" / "models" / "VGG_M"
SEED = 7  # --randomize
ITERS = 3  # solver steps
SAMPLES = 2048
NUM_ROIS = 8
IMAGE = (1, 3, 64, 96)
FG_THRESH = 0.5  # OICR's lib/fast_rcnn/config.py, cfg.TRAIN.FG_THRESH
# Stored whole: the backward checks run on the fork's values of these blobs.  roi_pool's
# bins over conv5 hold near ties (two maxima 3e-8 apart, relative), and conv2-4 values of
# 1e-5 near ReLU's 0, which OpenBLAS's and torch's rounding can order either way.
FULL = ("data/conv2", "data/conv3", "data/conv4", "data/conv5")

# The Python layers' tops, fed as inputs, with their shapes.
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "data": IMAGE, "rois": (NUM_ROIS, 5), "labels": (1, 20),
    "labels_ic": (NUM_ROIS,), "cls_loss_weights": (NUM_ROIS,),
    "labels_ic1": (NUM_ROIS,), "cls_loss_weights1": (NUM_ROIS,),
    "labels_ic2": (NUM_ROIS,), "cls_loss_weights2": (NUM_ROIS,),
}
# Each OICRLayer: (its probability bottom, its two tops).
OICR_LAYERS = (("midn_prob", "labels_ic", "cls_loss_weights"),
               ("ic_prob", "labels_ic1", "cls_loss_weights1"),
               ("ic_prob1", "labels_ic2", "cls_loss_weights2"))


def input_shapes(image: tuple[int, ...] = IMAGE, rois: int = NUM_ROIS
                 ) -> dict[str, tuple[int, ...]]:
    """The Python layers' tops, fed as inputs, with their shapes."""
    shapes = dict(INPUT_SHAPES, data=tuple(image), rois=(rois, 5))
    for _, labels_ic, weights in OICR_LAYERS:
        shapes[labels_ic] = shapes[weights] = (rois,)
    return shapes


def oracle_net(train_prototxt: str | os.PathLike,
               shapes: Mapping[str, tuple[int, ...]] = INPUT_SHAPES,
               dropout: bool = False) -> str:
    """OICR's train net with its Python layers as legacy inputs of these shapes, and
    Dropout at ratio 0 unless `dropout` (the benchmark keeps OICR's 0.5)."""
    net = caffe_pb2.NetParameter()
    text_format.Merge(Path(train_prototxt).read_text(), net)
    fed = []
    keep = []
    for layer in net.layer:
        if layer.type == "Python":
            fed += list(layer.top)
            continue
        if layer.type == "Dropout" and not dropout:
            layer.dropout_param.dropout_ratio = 0.0
        keep.append(layer)
    assert sorted(fed) == sorted(shapes), fed
    del net.layer[:]
    net.layer.extend(keep)
    for blob in fed:
        net.input.append(blob)
        net.input_shape.add().dim.extend(shapes[blob])
    return text_format.MessageToString(net)


def solver_text(net_path: str | os.PathLike) -> str:
    """OICR's solver.prototxt with train_net pointing at `net_path`."""
    solver = caffe_pb2.SolverParameter()
    text_format.Merge((VGG_M / "solver.prototxt").read_text(), solver)
    solver.train_net = os.fspath(net_path)
    return text_format.MessageToString(solver)


def minibatch(r: np.random.RandomState) -> dict[str, np.ndarray]:
    """A synthetic RoIDataLayer minibatch: an image of small values (with the He-scaled
    random weights, the scores stay near +-4 and the losses finite), 8 integer rois
    [0, x1, y1, x2, y2] inside it, and image labels with 3 classes present."""
    _, _, h, w = IMAGE
    data = r.uniform(-4.0, 4.0, IMAGE).astype(np.float32)
    x1 = r.randint(0, w - 16, NUM_ROIS)
    y1 = r.randint(0, h - 16, NUM_ROIS)
    x2 = np.minimum(x1 + r.randint(8, 48, NUM_ROIS), w - 1)
    y2 = np.minimum(y1 + r.randint(8, 40, NUM_ROIS), h - 1)
    rois = np.stack([np.zeros(NUM_ROIS), x1, y1, x2, y2], 1).astype(np.float32)
    labels = np.zeros((1, 20), np.float32)
    labels[0, r.choice(20, 3, replace=False)] = 1.0
    return {"data": data, "rois": rois, "labels": labels}


def bbox_overlaps(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """utils/bbox.pyx: IoU with Fast R-CNN's inclusive (+1) box sizes."""
    out = np.zeros((boxes.shape[0], query.shape[0]))
    for k, q in enumerate(query):
        q_area = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        iw = np.minimum(boxes[:, 2], q[2]) - np.maximum(boxes[:, 0], q[0]) + 1
        ih = np.minimum(boxes[:, 3], q[3]) - np.maximum(boxes[:, 1], q[1]) + 1
        ua = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1) + q_area - iw * ih
        out[:, k] = np.where((iw > 0) & (ih > 0), iw * ih / ua, 0.0)
    return out


def oicr_targets(rois: np.ndarray, prob: np.ndarray, labels: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """OICRLayer.forward (oicr_layer/layer.py): per roi, the class of the highest-scoring
    box of each present class it overlaps most (0 below FG_THRESH), and that box's score."""
    boxes = rois[:, 1:].astype(np.float64)
    cls_prob = prob[:, 1:].copy() if prob.shape[1] == 21 else prob.copy()
    gt_boxes, gt_classes, gt_scores = [], [], []
    for i in range(labels.shape[1]):
        if labels[0, i] == 1:
            j = int(np.argmax(cls_prob[:, i]))
            gt_boxes.append(boxes[j])
            gt_classes.append(i + 1)
            gt_scores.append(np.float32(cls_prob[j, i]))
            cls_prob[j, :] = 0
    overlaps = bbox_overlaps(boxes, np.array(gt_boxes))
    assignment = overlaps.argmax(axis=1)
    out_labels = np.array(gt_classes, np.float32)[assignment]
    weights = np.array(gt_scores, np.float32)[assignment]
    out_labels[overlaps.max(axis=1) < FG_THRESH] = 0
    return out_labels, weights


def randomized_weights(shapes: Iterator[tuple[str, list[tuple[int, ...]]]], seed: int
                       ) -> dict[str, list[np.ndarray]]:
    """oracle.py's randomize(seed) for the layers (in net order) and their blob shapes:
    weights ~ N(0, 2 / fan_in), every other blob ~ N(0, 0.1), drawn from one RandomState."""
    r = np.random.RandomState(seed)
    out: dict[str, list[np.ndarray]] = {}
    for layer, blob_shapes in shapes:
        arrays = []
        for j, shape in enumerate(blob_shapes):
            if j == 0 and len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                a = r.randn(*shape) * np.sqrt(2.0 / max(fan_in, 1))
            else:
                a = r.randn(*shape) * 0.1
            arrays.append(a.astype(np.float32))
        out[layer] = arrays
    return out


def sample_indices(key: str, size: int, flat_argmax: int) -> np.ndarray:
    """Fixed flat indices of an array: all of it when small, else SAMPLES of them."""
    if size <= SAMPLES:
        return np.arange(size, dtype=np.int64)
    r = np.random.RandomState(zlib.crc32(key.encode()))
    idx = np.unique(np.append(r.randint(0, size, SAMPLES - 1), flat_argmax))
    return idx.astype(np.int64)


def summarize(key: str, a: np.ndarray, dtype: type = np.float32) -> dict[str, np.ndarray]:
    flat = np.asarray(a, dtype).ravel()
    a64 = flat.astype(np.float64)
    top = int(np.argmax(np.abs(a64))) if a64.size else 0
    idx = sample_indices(key, flat.size, top)
    stats = np.array([a64.sum(), np.sqrt((a64 ** 2).sum()),
                      np.abs(a64).max() if a64.size else 0.0])
    return {f"{key}/idx": idx, f"{key}/val": flat[idx], f"{key}/stats": stats,
            f"{key}/shape": np.array(a.shape, np.int64)}


def oracle(*args: str) -> None:
    env = dict(os.environ, CAFFE_ORACLE_FORK="oicr")
    proc = subprocess.run([str(ORACLE), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe-oracle {args[0]} failed:\n{proc.stderr[-3000:]}")


def forward(net: Path, inputs: Mapping[str, np.ndarray], tmp: Path, *, save: Path | None
            ) -> dict[str, np.ndarray]:
    np.savez(tmp / "in.npz", **inputs)
    args = ["forward", str(net), "--phase", "train", "--inputs", str(tmp / "in.npz"),
            "--out", str(tmp / "out.npz"), "--seed", "1", "--randomize", str(SEED),
            "--backward"]
    if save is not None:
        args += ["--save-weights", str(save)]
    oracle(*args)
    with np.load(tmp / "out.npz") as f:
        return {k: f[k] for k in f.files if k != "meta"}


def make() -> dict[str, np.ndarray]:
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    r = np.random.RandomState(2016)
    inputs = minibatch(r)
    for _, labels_ic, weights in OICR_LAYERS:  # placeholders for the first pass
        inputs[labels_ic] = np.zeros(NUM_ROIS, np.float32)
        inputs[weights] = np.ones(NUM_ROIS, np.float32)
    with tempfile.TemporaryDirectory(prefix="oicr_goldens_") as tmpdir:
        tmp = Path(tmpdir)
        net = tmp / "train.prototxt"
        net.write_text(oracle_net(VGG_M / "train.prototxt"))
        # The probabilities the OICR layers read do not depend on their own tops.
        first = forward(net, inputs, tmp, save=None)
        for prob, labels_ic, weights in OICR_LAYERS:
            inputs[labels_ic], inputs[weights] = oicr_targets(
                inputs["rois"], first[f"data/{prob}"], inputs["labels"])
        del first
        weights_file = tmp / "w0.caffemodel"
        record = forward(net, inputs, tmp, save=weights_file)
        golden: dict[str, np.ndarray] = {f"input/{k}": v for k, v in inputs.items()}
        golden["seed"] = np.array(SEED)
        golden["iters"] = np.array(ITERS)
        for key in sorted(record):
            golden.update(summarize(key, record[key]))
        for key in FULL:
            golden[f"full/{key}"] = record[key]
        init = {k: v for k, v in record.items() if k.startswith("param/")}
        del record
        solver = tmp / "solver.prototxt"
        solver.write_text(solver_text(net))
        np.savez(tmp / "in.npz", **inputs)
        oracle("solve", str(solver), "--weights", str(weights_file), "--iters", str(ITERS),
               "--inputs", str(tmp / "in.npz"), "--out", str(tmp / "solve.npz"))
        with np.load(tmp / "solve.npz") as f:
            golden["step/loss"] = f["loss"]
            golden["step/lr"] = f["lr"]
            for key in f.files:
                if key.startswith("param/"):
                    # The steps move the weights by ~1e-3 of their size: the change is
                    # what is compared (float64 of the float32 weights, exact).
                    delta = f[key].astype(np.float64) - init[key].astype(np.float64)
                    golden.update(summarize(f"step/{key}", f[key]))
                    golden.update(summarize(f"step/delta/{key[len('param/'):]}", delta,
                                            np.float64))
    return golden


if __name__ == "__main__":
    print(write_golden(GOLDEN, "vgg_m_train", make()))
