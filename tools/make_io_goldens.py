"""Writes tests/golden/pycaffe_io/: what real pycaffe's caffe.io (python/caffe/io.py) computes.

Runs BVLC pycaffe 1.0 from the reference chroot (/opt/caffe-ref, Python 3.9, numpy 1.19,
scikit-image 0.18, scipy 1.6) on small deterministic arrays and on a few tiny images that
the chroot's own Pillow writes, and stores:

  images/*.png, *.jpg  the test images (a few hundred bytes each)
  inputs.npz           every input array, keyed by case name
  outputs.npz          pycaffe's result per case (protobuf bytes as uint8 arrays)
  errors.json          per error case: pycaffe's exception class and message

caffe.io.load_image itself fails in this chroot (it passes skimage's pre-0.16 keyword
`as_grey`, which skimage 0.18 hands to the imageio plugin: TypeError); its recorded error
is in errors.json, and the load goldens are what the same function body computes with the
keyword's current spelling `as_gray` (skimage.io.imread, img_as_float, tiling/alpha drop).

Developer tool, run by hand (root, for chroot):  sudo python tools/make_io_goldens.py
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir, replace_folder, run_in_chroot

GOLDEN = ROOT / "tests" / "golden" / "pycaffe_io"

# Runs inside the chroot (Python 3.9): reads inputs.npz from its folder, writes outputs.
INNER = r'''
import json, sys, traceback
import numpy as np
from PIL import Image
import skimage, skimage.io
import caffe.io as cio
from caffe.proto import caffe_pb2

here = sys.argv[1]
rng = np.random.RandomState(20240607)
ins, outs, errs = {}, {}, {}


def record_error(name, fn):
    try:
        fn()
    except Exception as e:  # what pycaffe raises, kept verbatim
        errs[name] = [type(e).__name__, str(e)]
    else:
        errs[name] = None


def as_bytes(b):
    return np.frombuffer(b, dtype=np.uint8).copy()


# ---- protobuf conversions -------------------------------------------------------------
a = rng.randn(2, 3, 4).astype(np.float32)
d = rng.randn(2, 3, 4)
ins["blob_a"], ins["blob_d"] = a, d
outs["array_to_blobproto"] = as_bytes(cio.array_to_blobproto(a).SerializeToString())
outs["array_to_blobproto_diff"] = as_bytes(cio.array_to_blobproto(a, d).SerializeToString())
ins["blob_int"] = np.arange(6, dtype=np.int64).reshape(2, 3)
outs["array_to_blobproto_int"] = as_bytes(
    cio.array_to_blobproto(ins["blob_int"]).SerializeToString())
legacy = caffe_pb2.BlobProto(num=1, channels=2, height=3, width=2)
legacy.data.extend(np.arange(12) * 0.5)
legacy.diff.extend(np.arange(12) * -0.25)
ins["blob_legacy"] = as_bytes(legacy.SerializeToString())
outs["blobproto_to_array_legacy"] = cio.blobproto_to_array(legacy)
outs["blobproto_to_array_legacy_diff"] = cio.blobproto_to_array(legacy, return_diff=True)
shaped = cio.array_to_blobproto(a, d)
outs["blobproto_to_array_shape"] = cio.blobproto_to_array(shaped)
outs["blobproto_to_array_shape_diff"] = cio.blobproto_to_array(shaped, return_diff=True)
ins["vec_0"], ins["vec_1"] = rng.rand(3).astype(np.float32), rng.rand(1, 2, 2, 2)
vec = cio.arraylist_to_blobprotovector_str([ins["vec_0"], ins["vec_1"]])
outs["arraylist_to_blobprotovector_str"] = as_bytes(vec)
for i, arr in enumerate(cio.blobprotovector_str_to_arraylist(vec)):
    outs["blobprotovector_str_to_arraylist_%d" % i] = arr

ins["datum_u8"] = rng.randint(0, 256, size=(3, 2, 4)).astype(np.uint8)
ins["datum_f"] = rng.randn(2, 3, 2).astype(np.float32)
datum_u8 = cio.array_to_datum(ins["datum_u8"], label=7)
datum_f = cio.array_to_datum(ins["datum_f"])
outs["array_to_datum_u8"] = as_bytes(datum_u8.SerializeToString())
outs["array_to_datum_f"] = as_bytes(datum_f.SerializeToString())
outs["datum_to_array_u8"] = cio.datum_to_array(datum_u8)
outs["datum_to_array_f"] = cio.datum_to_array(datum_f)
record_error("array_to_datum_2d", lambda: cio.array_to_datum(np.zeros((2, 3))))

# ---- resize_image ---------------------------------------------------------------------
resize_cases = {
    "up_rgb": ((4, 5, 3), (7, 9), np.float32),
    "down_rgb": ((9, 11, 3), (4, 5), np.float32),
    "down_rgb_int_factor": ((8, 8, 3), (4, 2), np.float32),
    "mixed_gray": ((6, 4, 1), (3, 7), np.float32),
    "same_rgb": ((5, 6, 3), (5, 6), np.float32),
    "to_1x1_rgb": ((4, 6, 3), (1, 1), np.float32),
    "up_rgb_f64": ((3, 4, 3), (5, 8), np.float64),
    "down_gray_f64": ((10, 7, 1), (3, 3), np.float64),
    "large_range_rgb": ((5, 5, 3), (8, 3), np.float32),
    "zoom_2ch_up": ((3, 4, 2), (7, 9), np.float32),
    "zoom_4ch_down": ((9, 8, 4), (4, 3), np.float32),
    "zoom_5ch_mixed": ((5, 6, 5), (8, 4), np.float64),
    "to_1_row_rgb": ((4, 6, 3), (1, 5), np.float32),
    "to_1_col_gray": ((4, 6, 1), (3, 1), np.float32),
    "zoom_2ch_to_1_row": ((4, 6, 2), (1, 5), np.float32),
}


def record_resize(key, gen, name, shape, dims, dtype, **order):
    """One resize case: an image drawn from `gen` (the large-range case scaled to
    [-40, 215)), its dims and what pycaffe's resize_image makes of it."""
    im = gen.rand(*shape).astype(dtype)
    if name == "large_range_rgb":
        im = (im * 255 - 40).astype(dtype)
    ins[key] = im
    ins[key + "_dims"] = np.array(dims)
    outs[key] = cio.resize_image(im, dims, **order)


for name, (shape, dims, dtype) in resize_cases.items():
    record_resize("resize_" + name, rng, name, shape, dims, dtype)
ins["resize_constant_rgb"] = np.full((3, 4, 3), 0.25, np.float32)
ins["resize_constant_rgb_dims"] = np.array((5, 2))
outs["resize_constant_rgb"] = cio.resize_image(ins["resize_constant_rgb"], (5, 2))
# Nearest and bicubic (skimage's Cython warp; interp_order 2, 4 and 5 go to scipy's
# splines, which caffe_fx refuses), from their own generator so the draws above stay.
orders = np.random.RandomState(20261203)
order_cases = {
    "up_rgb": ((4, 5, 3), (7, 9), np.float32),
    "down_rgb": ((9, 11, 3), (4, 5), np.float32),
    "mixed_gray": ((6, 4, 1), (3, 7), np.float32),
    "up_rgb_f64": ((3, 4, 3), (5, 8), np.float64),
    "large_range_rgb": ((5, 5, 3), (8, 3), np.float32),
    "to_1x1_rgb": ((4, 6, 3), (1, 1), np.float32),
    "big_up_rgb": ((20, 30, 3), (57, 41), np.float32),
}
for name, (shape, dims, dtype) in order_cases.items():
    for order in (0, 3):
        record_resize(f"resize_order{order}_{name}", orders, name, shape, dims, dtype,
                      interp_order=order)

# ---- oversample -----------------------------------------------------------------------
ims = [rng.rand(7, 8, 3).astype(np.float32) for _ in range(2)]
ins["oversample_0"], ins["oversample_1"] = ims
outs["oversample_even"] = cio.oversample(ims, (4, 4))
outs["oversample_odd"] = cio.oversample(ims, (3, 5))
ins["oversample_gray"] = rng.rand(6, 6, 1).astype(np.float32)
outs["oversample_gray"] = cio.oversample([ins["oversample_gray"]], (6, 6))

# ---- Transformer ----------------------------------------------------------------------
shape = (2, 3, 5, 6)
img = rng.rand(5, 6, 3).astype(np.float32)
img_other = rng.rand(7, 4, 3).astype(np.float32)
mean_c = np.array([104.0, 117.0, 123.0])
mean_full = rng.rand(3, 5, 6) * 100
mean_big = rng.rand(3, 8, 9) * 100
mean_2d = rng.rand(5, 6) * 50
ins.update(tf_img=img, tf_img_other=img_other, tf_mean_c=mean_c, tf_mean_full=mean_full,
           tf_mean_big=mean_big, tf_mean_2d=mean_2d)


def caffenet_like(mean):
    t = cio.Transformer({"data": shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", mean)
    return t


configs = {
    "caffenet_channel_mean": caffenet_like(mean_c),
    "caffenet_full_mean": caffenet_like(mean_full),
    "caffenet_resized_mean": caffenet_like(mean_big),
}
t = cio.Transformer({"data": shape, "gray": (1, 1, 5, 6)})
t.set_transpose("data", (2, 0, 1))
t.set_input_scale("data", 0.017)
t.set_mean("data", mean_c)
t.set_raw_scale("data", 255)
t.set_transpose("gray", (2, 0, 1))
t.set_mean("gray", mean_2d)
configs["input_scale"] = t
configs["transpose_only"] = cio.Transformer({"data": shape})
configs["transpose_only"].set_transpose("data", (2, 0, 1))
for name, t in configs.items():
    for src in ("img", "img_other"):
        x = ins["tf_" + src].copy()
        pre = t.preprocess("data", x)
        outs["tf_%s_%s_pre" % (name, src)] = pre
        outs["tf_%s_%s_de" % (name, src)] = t.deprocess("data", pre)
    outs["tf_%s_mean" % name] = np.asarray(t.mean.get("data", np.zeros(0)))
gray = rng.rand(5, 6, 1).astype(np.float32)
ins["tf_gray_img"] = gray
outs["tf_gray_pre"] = configs["input_scale"].preprocess("gray", gray.copy())
# deprocess squeezes the 1-channel axis away, then cannot undo the 3-axis transpose.
record_error("tf_gray_de", lambda: configs["input_scale"].deprocess("gray", outs["tf_gray_pre"]))
outs["tf_gray_mean"] = configs["input_scale"].mean["gray"]

t = cio.Transformer({"data": shape})
record_error("tf_unknown_input", lambda: t.set_raw_scale("label", 1.0))
record_error("tf_transpose_len", lambda: t.set_transpose("data", (1, 0)))
record_error("tf_channel_swap_len", lambda: t.set_channel_swap("data", (1, 0)))
record_error("tf_mean_channels", lambda: t.set_mean("data", np.zeros(4)))
record_error("tf_mean_ndim", lambda: t.set_mean("data", np.zeros((1, 3, 5, 6))))
record_error("tf_preprocess_unknown", lambda: t.preprocess("label", img))

# ---- images ---------------------------------------------------------------------------
os = __import__("os")
os.makedirs(os.path.join(here, "images"), exist_ok=True)
yy, xx = np.mgrid[0:6, 0:7]
rgb = np.stack([(yy * 40 + xx * 3) % 256, (xx * 37) % 256, (yy * xx * 11) % 256], -1)
rgb = rgb.astype(np.uint8)
alpha = ((xx * 40 + 10) % 256).astype(np.uint8)
Image.fromarray(rgb, "RGB").save(os.path.join(here, "images", "rgb.png"))
Image.fromarray(rgb[:, :, 1], "L").save(os.path.join(here, "images", "gray.png"))
Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(os.path.join(here, "images", "rgba.png"))
Image.fromarray(rgb, "RGB").save(os.path.join(here, "images", "rgb.jpg"), quality=90)
for fname in ("rgb.png", "gray.png", "rgba.png", "rgb.jpg"):
    path = os.path.join(here, "images", fname)
    stem = fname.replace(".", "_")
    record_error("load_image_" + stem, lambda: cio.load_image(path))
    for color in (True, False):
        # caffe.io.load_image's body, with skimage's current keyword spelling.
        im = skimage.img_as_float(skimage.io.imread(path, as_gray=not color)).astype(np.float32)
        if im.ndim == 2:
            im = im[:, :, np.newaxis]
            if color:
                im = np.tile(im, (1, 1, 3))
        elif im.shape[2] == 4:
            im = im[:, :, :3]
        outs["load_%s_%s" % (stem, "color" if color else "gray")] = im

np.savez_compressed(os.path.join(here, "inputs.npz"), **ins)
np.savez_compressed(os.path.join(here, "outputs.npz"), **outs)
with open(os.path.join(here, "errors.json"), "w") as f:
    json.dump(errs, f, indent=1, sort_keys=True)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", default=os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
    parser.add_argument("--force", action="store_true", help="replace existing goldens")
    args = parser.parse_args()
    if GOLDEN.exists() and any(GOLDEN.iterdir()) and not args.force:
        sys.exit(f"{GOLDEN} is not empty; pass --force to regenerate it")
    with chroot_workdir(Path(args.caffe_root), "io_goldens_") as (work, inside):
        (work / "inner.py").write_text(INNER)
        run_in_chroot(args.caffe_root, f"{inside}/inner.py", [inside])
        replace_folder(GOLDEN, work, ("inputs.npz", "outputs.npz", "errors.json", "images"))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
