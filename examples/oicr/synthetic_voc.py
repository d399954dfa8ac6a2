"""A tiny synthetic PASCAL VOC 2007, laid out where an OICR checkout reads it.

examples/oicr: for trying a ported checkout (port.py) without the real data set.

    python examples/oicr/synthetic_voc.py /path/to/oicr [--trainval 4 --test 3]

writes, under the checkout (the paths of lib/datasets/pascal_voc.py and imdb.py):
  data/VOCdevkit2007/VOC2007/JPEGImages/<id>.jpg     small JPEGs: coloured boxes on noise
  data/VOCdevkit2007/VOC2007/Annotations/<id>.xml    VOC XML (name, pose, truncated,
                                                     difficult, 1-based bndbox)
  data/VOCdevkit2007/VOC2007/ImageSets/Main/{trainval,test}.txt
  data/selective_search_data/voc_2007_{trainval,test}.mat
      `boxes`: a 1 x N cell of R x 4 doubles, 1-based (y1, x1, y2, x2), as the Fast R-CNN
      selective-search files hold them (pascal_voc.py reorders to 0-based x1, y1, x2, y2)
The proposals are jittered copies of every object's box plus random boxes.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

# Each class drawn as a filled box of one colour (RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "car": (220, 30, 30), "dog": (30, 60, 220), "person": (30, 200, 40),
}


def _annotation(index: str, width: int, height: int,
                objects: Sequence[tuple[str, tuple[int, int, int, int]]]) -> str:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{index}.jpg</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
             "<segmented>0</segmented>"]
    for name, (x1, y1, x2, y2) in objects:
        parts.append(
            f"<object><name>{escape(name)}</name><pose>Unspecified</pose>"
            "<truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
            "</bndbox></object>")
    parts.append("</annotation>\n")
    return "".join(parts)


def _proposals(rng: np.random.Generator, width: int, height: int,
               objects: Sequence[tuple[str, tuple[int, int, int, int]]],
               jittered: int, random: int) -> np.ndarray:
    """R x 4 boxes, 1-based (y1, x1, y2, x2), inside the image."""
    boxes = []
    for _, (x1, y1, x2, y2) in objects:
        w, h = x2 - x1, y2 - y1
        for k in range(jittered):
            d = (rng.normal(0, 0.08, 4) * [w, h, w, h]) if k else np.zeros(4)
            boxes.append([x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3]])
    for _ in range(random):
        x = np.sort(rng.uniform(1, width, 2))
        y = np.sort(rng.uniform(1, height, 2))
        boxes.append([x[0], y[0], max(x[1], x[0] + 8), max(y[1], y[0] + 8)])
    b = np.round(np.array(boxes, dtype=np.float64))
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 1, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 1, height)
    return b[:, [1, 0, 3, 2]]


def write(root: str | Path, trainval: int = 4, test: int = 3, width: int = 160,
          height: int = 120, classes: Sequence[str] = ("car", "dog", "person"), jittered: int = 6,
          random: int = 20, seed: int = 0) -> dict[str, list[str]]:
    """Writes the data set under root/data; returns {"trainval": ids, "test": ids}.
    Each image holds two objects (one if `classes` has one) of consecutive classes, one in
    each half, so every image has as many labels (the MIDN loss has one scale)."""
    from PIL import Image
    from scipy.io import savemat

    for c in classes:
        if c not in COLOURS:
            raise ValueError(f"class {c!r} has no colour; allowed: {', '.join(COLOURS)}")
    rng = np.random.default_rng(seed)
    data = Path(root) / "data"
    voc = data / "VOCdevkit2007" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    (data / "selective_search_data").mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {}
    n = 0
    for split, count in (("trainval", trainval), ("test", test)):
        ids, cells = [], []
        for _ in range(count):
            n += 1
            index = f"{n:06d}"
            ids.append(index)
            pixels = rng.integers(90, 150, (height, width, 3)).astype(np.uint8)
            names = [classes[(n + j) % len(classes)] for j in range(min(2, len(classes)))]
            objects = []
            for j, name in enumerate(names):
                w = int(rng.integers(width // 4, width // 2))
                h = int(rng.integers(height // 4, height // 2))
                x1 = int(rng.integers(1, width // 2 - w // 2)) + j * (width // 2)
                y1 = int(rng.integers(1, height - h))
                x1 = min(x1, width - w)
                box = (x1, y1, x1 + w - 1, y1 + h - 1)  # 1-based, inclusive
                pixels[box[1] - 1:box[3], box[0] - 1:box[2]] = COLOURS[name]
                objects.append((name, box))
            Image.fromarray(pixels).save(voc / "JPEGImages" / f"{index}.jpg", quality=95)
            (voc / "Annotations" / f"{index}.xml").write_text(
                _annotation(index, width, height, objects))
            cells.append(_proposals(rng, width, height, objects, jittered, random))
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
        cell = np.empty((1, len(cells)), dtype=object)
        for i, boxes in enumerate(cells):
            cell[0, i] = boxes
        savemat(data / "selective_search_data" / f"voc_2007_{split}.mat", {"boxes": cell})
        splits[split] = ids
    return splits


def random_caffemodel(prototxt: str | Path, out: str | Path, seed: int = 0,
                      pixel_scale: float = 64.0) -> Path:
    """Synthetic "ImageNet-pretrained" weights for the net of prototxt, saved as a
    caffemodel by caffe_fx.pycaffe: the layers without a weight_filler (those an ImageNet
    model supplies: VGG_M's conv1-5, fc6, fc7; Caffe's default filler would leave them at
    zero) get He-normal weights (std sqrt(2 / fan_in)) and zero biases; the first of them
    is divided by pixel_scale (the inputs are pixels less the mean), so activations stay
    near unit scale.  The layers with fillers keep the draws of their fillers."""
    import caffe_fx.pycaffe as caffe
    from caffe_fx.proto import caffe_pb2
    from google.protobuf import text_format

    param = caffe_pb2.NetParameter()
    text_format.Merge(Path(prototxt).read_text(), param)
    filled = {lp.name for lp in param.layer
              for p in (lp.convolution_param, lp.inner_product_param)
              if p.HasField("weight_filler")}
    net = caffe.Net(str(prototxt), caffe.TEST)
    rng = np.random.default_rng(seed)
    first = True
    for name, blobs in net.params.items():
        if name in filled:
            continue
        weight = blobs[0].data
        fan_in = int(np.prod(weight.shape[1:])) or 1
        std = np.sqrt(2.0 / fan_in) / (pixel_scale if first else 1.0)
        weight[...] = rng.standard_normal(weight.shape, dtype=np.float32) * np.float32(std)
        for bias in blobs[1:]:
            bias.data[...] = 0
        first = False
    net.save(str(out))
    return Path(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="the OICR checkout; data/ is written under it")
    parser.add_argument("--trainval", type=int, default=4)
    parser.add_argument("--test", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", metavar="PROTOTXT:CAFFEMODEL",
                        help="also write random weights for the net PROTOTXT to CAFFEMODEL "
                        "(e.g. models/VGG_M/test.prototxt:data/vgg_m_random.caffemodel)")
    args = parser.parse_args(argv)
    splits = write(args.checkout, trainval=args.trainval, test=args.test, seed=args.seed)
    print(f"synthetic VOC2007 under {Path(args.checkout) / 'data'}: "
          + ", ".join(f"{k} {len(v)} images" for k, v in splits.items()))
    if args.weights:
        prototxt, sep, out = args.weights.rpartition(":")
        if not sep or not prototxt or not out:
            parser.error("--weights takes PROTOTXT:CAFFEMODEL")
        print(f"random weights for {prototxt}: {random_caffemodel(prototxt, out, args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
