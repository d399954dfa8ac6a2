"""Writes tests/golden/data/: the top shapes real Caffe gives its data layers at set-up.

Makes small sources with Caffe's own tools inside the reference chroot (/opt/caffe-ref):
PNG/JPEG images from its Pillow, LMDB and LevelDB databases from convert_imageset (raw,
--gray/--resize, --encoded), HDF5 files from its h5py, image lists and a window file;
then builds each net of NETS with real Caffe and stores

  images/ lists/ db/ hdf5/ windows.txt   the sources (paths in the nets are relative to
                                         this folder, which must be the current folder)
  nets/<case>.prototxt                   one net per case
  shapes.json                            per case and phase: every blob's shape, as the
                                         oracle (`caffe-oracle forward`) recorded it; for
                                         MemoryData, which cannot forward without
                                         Reset(), the shapes pycaffe's Net() set up
  errors.json                            per error case: the line Caffe aborted with

Developer tool, run by hand (root, for chroot):  sudo python tools/make_data_goldens.py
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import ORACLE, oracle_unavailable  # noqa: E402
from tools._chroot import chroot_workdir, replace_folder, run_in_chroot  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "data"
SOURCES = ("images", "lists", "db", "hdf5", "windows.txt")

# Runs inside the chroot (Python 3.9): makes the sources in its folder, then sets up the
# MemoryData net (pycaffe's Net(); no forward: MemoryData needs Reset() first).
INNER = r'''
import json, os, subprocess, sys
import h5py
import numpy as np
from PIL import Image
import caffe

os.chdir(sys.argv[1])
r = np.random.RandomState(20261201)
for d in ("images", "lists", "db", "hdf5"):
    os.makedirs(d)


def rgb(h, w):
    return Image.fromarray(r.randint(0, 256, (h, w, 3), dtype=np.uint8))


for i in range(3):
    rgb(12, 10).save("images/rgb%d.png" % i)
Image.fromarray(r.randint(0, 256, (9, 7, 4), dtype=np.uint8), "RGBA").save("images/rgba.png")
Image.fromarray(r.randint(0, 256, (12, 10), dtype=np.uint8), "L").save("images/gray.png")
exif = Image.Exif()
exif[0x0112] = 6  # EXIF orientation: turned a quarter; OpenCV's imread turns it back
rgb(12, 10).save("images/turned.jpg", exif=exif.tobytes(), quality=90)

lists = {
    "rgb": "rgb0.png 0\nrgb1.png 1\nrgb2.png 2\n",
    "gray": "gray.png 0\nrgb0.png 1\n",
    "rgba": "rgba.png 0\n",
    "turned": "turned.jpg 0\n",
    "empty": "",
    "missing": "nope.png 0\n",
}
for name, text in lists.items():
    with open("lists/%s.txt" % name, "w") as f:
        f.write(text)


def convert(listed, db, *flags):
    subprocess.run(["convert_imageset", *flags, "images/", "lists/%s.txt" % listed,
                    "db/" + db], check=True, capture_output=True)


convert("rgb", "rgb_lmdb", "--backend=lmdb")
convert("rgb", "gray_small_leveldb", "--backend=leveldb", "--gray",
        "--resize_height=6", "--resize_width=5")
convert("rgba", "rgba_png_lmdb", "--backend=lmdb", "--encoded")
convert("turned", "turned_jpg_leveldb", "--backend=leveldb", "--encoded")

for name, rows in (("train0", 5), ("train1", 4)):
    with h5py.File("hdf5/%s.h5" % name, "w") as f:
        f["data"] = r.randn(rows, 3, 4, 2).astype(np.float32)
        f["label"] = r.randint(0, 3, rows).astype(np.int32)
        f["extra"] = r.randn(rows, 7)
with h5py.File("hdf5/rows.h5", "w") as f:
    f["data"] = r.randn(5, 3, 4, 2).astype(np.float32)
    f["label"] = np.zeros(4, np.float32)
for name, files in (("train", ["train0", "train1"]), ("rows", ["rows"])):
    with open("hdf5/%s.txt" % name, "w") as f:
        f.write("".join("hdf5/%s.h5\n" % n for n in files))

# The first image's header says 1 channel, the last one's 3: Caffe keeps the last.
with open("windows.txt", "w") as f:
    f.write("# 0\nimages/rgb0.png\n1\n12\n10\n2\n1 0.8 0 0 5 5\n0 0.1 2 2 8 9\n"
            "# 1\nimages/rgb1.png\n3\n12\n10\n2\n2 0.9 1 1 6 6\n0 0.2 0 0 9 11\n")

net = caffe.Net("nets/memory_data.prototxt", caffe.TEST)
with open("memory.json", "w") as f:
    json.dump({k: list(v.data.shape) for k, v in net.blobs.items()}, f)
'''


def _data(top2: bool, source: str, params: str = "", transform: str = "",
          phase: str = "", name: str = "data") -> str:
    tops = ' top: "data" top: "label"' if top2 else ' top: "data"'
    inc = f" include {{ phase: {phase} }}" if phase else ""
    tp = f" transform_param {{ {transform} }}" if transform else ""
    return (f'layer {{ name: "{name}" type: "Data"{tops}{inc}\n'
            f'  data_param {{ source: "{source}" {params} }}{tp} }}\n')


def _layer(kind: str, params: str, tops: str, extra: str = "") -> str:
    top = "".join(f' top: "{t}"' for t in tops.split())
    return f'layer {{ name: "data" type: "{kind}"{top}{extra}\n  {params} }}\n'


TRAIN_VAL = (
    _data(True, "db/rgb_lmdb", "backend: LMDB batch_size: 2", "crop_size: 8 mirror: true",
          "TRAIN")
    + _data(True, "db/rgb_lmdb", "backend: LMDB batch_size: 3", "crop_size: 8", "TEST",
            name="data_test")
    + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
      '  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }\n'
      'layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"\n'
      '  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n'
      'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n'
      'layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"\n'
      '  include { phase: TEST } }\n')

IMAGE = "image_data_param"
WINDOW = ('window_data_param { source: "windows.txt" batch_size: 4 fg_threshold: 0.5 '
          'bg_threshold: 0.5 fg_fraction: 0.25 }')

# case -> (phases, prototxt)
NETS: dict[str, tuple[tuple[str, ...], str]] = {
    "train_val": (("train", "test"), TRAIN_VAL),
    "data_leveldb_gray_resized": (("test",), _data(
        False, "db/gray_small_leveldb", "backend: LEVELDB batch_size: 4")),
    "data_encoded_native": (("test",), _data(True, "db/rgba_png_lmdb",
                                             "backend: LMDB batch_size: 2")),
    "data_encoded_force_gray": (("test",), _data(
        True, "db/rgba_png_lmdb", "backend: LMDB batch_size: 2", "force_gray: true")),
    "data_encoded_force_color": (("test",), _data(
        True, "db/rgba_png_lmdb", "backend: LMDB batch_size: 2", "force_color: true")),
    "data_encoded_jpeg_turned": (("test",), _data(
        True, "db/turned_jpg_leveldb", "backend: LEVELDB batch_size: 1")),
    "data_encoded_jpeg_turned_color": (("test",), _data(
        True, "db/turned_jpg_leveldb", "backend: LEVELDB batch_size: 1", "force_color: true")),
    "image_data": (("train",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/rgb.txt" root_folder: "images/" '
        'batch_size: 2 shuffle: true }', "data label")),
    "image_data_gray_resized_crop": (("test",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/gray.txt" root_folder: "images/" '
        'batch_size: 3 is_color: false new_height: 9 new_width: 8 }', "data label",
        " transform_param { crop_size: 7 }")),
    "image_data_turned": (("test",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/turned.txt" root_folder: "images/" '
        'batch_size: 1 }', "data label")),
    "hdf5_data": (("train",), _layer(
        "HDF5Data", 'hdf5_data_param { source: "hdf5/train.txt" batch_size: 3 }',
        "data label extra")),
    "memory_data": (("test",), _layer(
        "MemoryData", "memory_data_param { batch_size: 5 channels: 2 height: 3 width: 4 }",
        "data label")),
    "window_data": (("train",), _layer("WindowData", WINDOW, "data label",
                                       " transform_param { crop_size: 6 }")),
    # Nets Caffe refuses at set-up (the oracle aborts): errors.json keeps its message.
    "err_lmdb_missing": (("test",), _data(True, "db/nope_lmdb", "backend: LMDB batch_size: 2")),
    "err_leveldb_missing": (("test",), _data(True, "db/nope_leveldb", "batch_size: 2")),
    "err_crop_too_big": (("test",), _data(True, "db/rgb_lmdb", "backend: LMDB batch_size: 2",
                                          "crop_size: 11")),
    "err_encoded_force_both": (("test",), _data(
        True, "db/rgba_png_lmdb", "backend: LMDB batch_size: 2",
        "force_color: true force_gray: true")),
    "err_image_list_empty": (("test",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/empty.txt" batch_size: 2 }}', "data label")),
    "err_image_list_missing": (("test",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/nope.txt" batch_size: 2 }}', "data label")),
    "err_image_missing": (("test",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/missing.txt" root_folder: "images/" '
        'batch_size: 2 }', "data label")),
    "err_image_new_height_only": (("test",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/rgb.txt" root_folder: "images/" '
        'batch_size: 2 new_height: 5 }', "data label")),
    "err_image_one_top": (("test",), _layer(
        "ImageData", f'{IMAGE} {{ source: "lists/rgb.txt" root_folder: "images/" '
        'batch_size: 2 }', "data")),
    "err_hdf5_list_missing": (("test",), _layer(
        "HDF5Data", 'hdf5_data_param { source: "hdf5/nope.txt" batch_size: 2 }', "data")),
    "err_hdf5_no_dataset": (("test",), _layer(
        "HDF5Data", 'hdf5_data_param { source: "hdf5/train.txt" batch_size: 2 }', "data nope")),
    "err_hdf5_rows": (("test",), _layer(
        "HDF5Data", 'hdf5_data_param { source: "hdf5/rows.txt" batch_size: 2 }', "data label")),
    "err_hdf5_transform": (("test",), _layer(
        "HDF5Data", 'hdf5_data_param { source: "hdf5/train.txt" batch_size: 2 }', "data",
        " transform_param { scale: 0.5 }")),
    "err_memory_zero_channels": (("test",), _layer(
        "MemoryData", "memory_data_param { batch_size: 5 height: 3 width: 4 }", "data label")),
    "err_window_no_crop": (("test",), _layer("WindowData", WINDOW, "data label")),
}


def _abort_line(stderr: str) -> str:
    # glog's fatal lines: "F1126 01:54:06.802587 19279 file.cpp:79] message"
    lines = [ln.split("] ", 1)[-1] for ln in stderr.splitlines() if re.match(r"F\d{4} ", ln)]
    return (lines or stderr.strip().splitlines()[-1:] or ["no output"])[0].strip()


def _forward(run: Path, case: str, phase: str) -> tuple[dict | None, str | None]:
    """(blob shapes, None) from the oracle, or (None, Caffe's abort line)."""
    for _ in range(3):  # now and then an oracle run ends without writing its output
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.npz"
            proc = subprocess.run([str(ORACLE), "forward", f"nets/{case}.prototxt",
                                   "--phase", phase, "--out", str(out)],
                                  cwd=run, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                return None, _abort_line(proc.stderr)
            if out.exists():
                with np.load(out) as f:
                    return json.loads(str(f["meta"]))["blobs"], None
    raise RuntimeError(f"caffe-oracle wrote no output for {case} ({phase}):\n"
                       f"{proc.stderr[-2000:]}")


def _one_line_each(cases: dict) -> str:
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}"
                               for k, v in sorted(cases.items())) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", default=os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
    args = parser.parse_args()
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    shapes: dict[str, dict[str, dict]] = {}
    errors: dict[str, dict[str, str]] = {}
    failed = []
    with chroot_workdir(Path(args.caffe_root), "data_goldens_") as (work, inside):
        (work / "nets").mkdir()
        for case, (_, text) in NETS.items():
            (work / "nets" / f"{case}.prototxt").write_text(f'name: "{case}"\n{text}')
        (work / "inner.py").write_text(INNER)
        run_in_chroot(args.caffe_root, f"{inside}/inner.py", [inside])
        memory = json.loads((work / "memory.json").read_text())
        # Caffe opening a LevelDB writes into it: the oracle runs on a copy.
        run = work / "run"
        run.mkdir()
        for name in (*SOURCES, "nets"):
            src = work / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, run / name)
        for case, (phases, _) in NETS.items():
            for phase in phases:
                if case == "memory_data":
                    shapes.setdefault(case, {})[phase] = memory
                    continue
                blobs, abort = _forward(run, case, phase)
                if case.startswith("err_"):
                    if abort is None:
                        failed.append(f"{case}: Caffe accepted it")
                    else:
                        errors[case] = {"phase": phase, "caffe": abort}
                elif abort is not None:
                    failed.append(f"{case} ({phase}): {abort}")
                else:
                    shapes.setdefault(case, {})[phase] = blobs
                print(f"{case} ({phase}): {abort or blobs}", flush=True)
        if failed:
            sys.exit("\n".join(failed))
        for db in (work / "db").iterdir():  # locks and info logs are not the data
            for junk in ("lock.mdb", "LOCK", "LOG", "LOG.old"):
                (db / junk).unlink(missing_ok=True)
        (work / "shapes.json").write_text(_one_line_each(shapes))
        (work / "errors.json").write_text(_one_line_each(errors))
        replace_folder(GOLDEN, work, (*SOURCES, "nets", "shapes.json", "errors.json"))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
