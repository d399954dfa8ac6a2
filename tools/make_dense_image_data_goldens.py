"""Writes tests/golden/dense_image_data/: the batches SegNet's DenseImageData layer
(alexgkendall/caffe-segnet) fills its data and label tops with, run for real.

    python tools/make_dense_image_data_goldens.py

Needs root and ../shared/caffe-oracle with its `segnet` overlay (CAFFE_ORACLE_FORK=segnet).
Writes a few tiny images (PPM, PGM, BMP and PNG, colour and grey, 5 x 7 pixels) and label maps
(PGM and grey PNG, values 0-11) and their lists, then for each case a net holding only
the DenseImageData layer, run by the oracle (caffe.set_random_seed(1), Net(), one
forward()) from inside the golden folder, so every path is relative to it:

  images/                  the images and label maps
  list.txt, pairs.txt      "image label" lines (pairs.txt: two, with extra spaces)
  gray.txt                 the colour PPM, BMP and PNG that `is_color: false` reads grey
  nets/<case>.prototxt     one net per case
  cases.json               per case: phase, seed, tops
  batches.npz              '<case>/<top>' -> the top's data after the forward
  net_segnet_mini.npz      NET (DenseImageData, a 1x1 Convolution, the class-weighted
                           SoftmaxWithLoss) forward and backward: data/, diff/, param/,
                           pdiff/ as the oracle records them

One forward's batch is the first prefetched one; batch sizes larger than the list show
the wrap to the list's start (and, with shuffle, the reshuffle at each epoch's end).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import oracle_unavailable, run_oracle  # noqa: E402
from tools._oracle_goldens import write_golden  # noqa: E402

TARGET = ROOT / "tests" / "golden" / "dense_image_data"
SEED = 1  # run_oracle's --seed


def _pnm(path: Path, pixels: np.ndarray) -> None:
    """Binary PPM (P6, RGB) or PGM (P5) of uint8 pixels."""
    magic = b"P6" if pixels.ndim == 3 else b"P5"
    h, w = pixels.shape[:2]
    path.write_bytes(magic + f"\n{w} {h}\n255\n".encode() + pixels.astype(np.uint8).tobytes())


def write_sources() -> None:
    from PIL import Image

    r = np.random.RandomState(20261202)
    images = TARGET / "images"
    images.mkdir(parents=True, exist_ok=True)
    h, w = 5, 7
    _pnm(images / "img0.ppm", r.randint(0, 256, (h, w, 3)))
    Image.fromarray(r.randint(0, 256, (h, w, 3)).astype(np.uint8), "RGB").save(images / "img1.png")
    _pnm(images / "img2.pgm", r.randint(0, 256, (h, w)))
    _pnm(images / "lab0.pgm", r.randint(0, 12, (h, w)))
    Image.fromarray(r.randint(0, 12, (h, w)).astype(np.uint8), "L").save(images / "lab1.png")
    Image.fromarray(r.randint(0, 12, (h, w)).astype(np.uint8), "L").save(images / "lab2.png")
    (TARGET / "list.txt").write_text("img0.ppm lab0.pgm\nimg1.png lab1.png\n"
                                     "img2.pgm lab2.png\n")
    Image.fromarray(r.randint(0, 256, (h, w, 3)).astype(np.uint8), "RGB").save(images / "img3.bmp")
    (TARGET / "gray.txt").write_text("img0.ppm lab0.pgm\nimg3.bmp lab2.png\nimg1.png lab1.png\n")
    (TARGET / "pairs.txt").write_text("img1.png lab1.png\nimg0.ppm   lab0.pgm")


def _layer(params: str, transform: str = "", source: str = "list.txt") -> str:
    tp = f"\n  transform_param {{ {transform} }}" if transform else ""
    return (f'name: "dense"\nlayer {{ name: "data" type: "DenseImageData" top: "data" '
            f'top: "label"\n  dense_image_data_param {{ source: "{source}" '
            f'root_folder: "images/" {params} }}{tp} }}\n')


# case -> (phase, prototxt)
CASES: dict[str, tuple[str, str]] = {
    "plain_wrap": ("test", _layer("batch_size: 5")),
    "gray": ("test", _layer("batch_size: 3 is_color: false", source="gray.txt")),
    "resize": ("test", _layer("batch_size: 3 new_height: 4 new_width: 9")),
    "resize_up": ("test", _layer("batch_size: 2 new_height: 8 new_width: 11")),
    "scale_mean_value": ("test", _layer(
        "batch_size: 3", "scale: 0.5 mean_value: 10 mean_value: 20 mean_value: 30")),
    "shuffle": ("test", _layer("batch_size: 7 shuffle: true")),
    "mirror": ("train", _layer("batch_size: 6 mirror: true")),
    "crop": ("test", _layer("batch_size: 4 crop_height: 3 crop_width: 4")),
    "crop_mirror_shuffle": ("train", _layer(
        "batch_size: 5 crop_height: 4 crop_width: 2 mirror: true shuffle: true")),
    "rand_skip": ("test", _layer("batch_size: 2 rand_skip: 3")),
    "pairs_batch1": ("test", _layer("batch_size: 1", source="pairs.txt")),
}


# A SegNet-like end: the batch through a 1x1 Convolution (oracle-randomized weights) into
# the class-weighted loss, forward and backward.
_W12 = " ".join(f"class_weighting: {0.25 + 0.5 * i}" for i in range(12))
NET = (_layer("batch_size: 2 shuffle: true mirror: true") +
       'layer { name: "score" type: "Convolution" bottom: "data" top: "score" '
       'convolution_param { num_output: 12 kernel_size: 1 } }\n'
       'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" '
       f'top: "loss" loss_param {{ weight_by_label_freqs: true ignore_label: 11 {_W12} }} }}\n')


def main() -> None:
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    write_sources()
    (TARGET / "nets").mkdir(exist_ok=True)
    os.environ["CAFFE_ORACLE_FORK"] = "segnet"
    here = os.getcwd()
    os.chdir(TARGET)  # the nets' paths are relative to the golden folder
    batches: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    try:
        for case, (phase, text) in CASES.items():
            net = Path("nets") / f"{case}.prototxt"
            net.write_text(text)
            got, _ = run_oracle(net, {}, phase=phase, workdir=TARGET)
            for top in ("data", "label"):
                batches[f"{case}/{top}"] = got[f"data/{top}"]
            meta[case] = {"phase": phase, "seed": SEED, "tops": ["data", "label"]}
            print(f"{case}: {got['data/data'].shape} {got['data/label'].shape}", flush=True)
        net = Path("nets") / "net_segnet_mini.prototxt"
        net.write_text(NET)
        got, _ = run_oracle(net, {}, phase="train", workdir=TARGET, randomize=5,
                            backward=True)
        got.pop("diff/label", None)
        print(write_golden(TARGET, "net_segnet_mini", got))
    finally:
        os.chdir(here)
    (TARGET / "cases.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(write_golden(TARGET, "batches", batches))


if __name__ == "__main__":
    main()
