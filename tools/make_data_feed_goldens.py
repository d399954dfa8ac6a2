"""Writes tests/golden/data_feed/: the batches real Caffe's data layers fill their tops with.

Reuses the sources of tests/golden/data/ (tools/make_data_goldens.py) and adds, with
Caffe's own tools inside the reference chroot (/opt/caffe-ref): a mean.binaryproto from
compute_image_mean over data/db/rgb_lmdb and a tiny MNIST LMDB from convert_mnist_data
over MNIST-format files written here.  Then, for each case of CASES, real pycaffe
(caffe.set_random_seed, set_solver_count/rank, Net(), several forward()) records every
data-layer top after each forward, and for each error case the line Caffe aborted with.

  nets/<case>.prototxt     one net per case; paths are relative to tests/golden/
  mean.binaryproto         compute_image_mean data/db/rgb_lmdb
  mnist_lmdb/ mnist/       convert_mnist_data's LMDB and the idx files it read
  float_lmdb/              Datums of float_data (no Caffe tool writes them: written here
                           with the lmdb package, then read by Caffe)
  hdf5.txt                 an HDF5 list naming data/hdf5/train{0,1}.h5
  cases.json               per case: phase, seed, solver count/rank, forwards, tops
  batches.npz              '<case>/<forward>/<top>' -> the top's data after that forward
  errors.json              per error case: Caffe's abort line

Developer tool, run by hand (root, for chroot):  sudo python tools/make_data_feed_goldens.py
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir, replace_folder

GOLDEN = ROOT / "tests" / "golden"
TARGET = GOLDEN / "data_feed"
MADE = ("nets", "mean.binaryproto", "mnist_lmdb", "mnist", "float_lmdb", "hdf5.txt",
        "cases.json", "batches.npz", "errors.json")

# Runs inside the chroot (Python 3.9), in a folder laid out as tests/golden/ is.
SETUP = r'''
import os, struct, subprocess, sys
import numpy as np
os.chdir(sys.argv[1])
r = np.random.RandomState(20261202)
os.makedirs("data_feed/mnist")
n, rows, cols = 4, 6, 5
with open("data_feed/mnist/images.idx3", "wb") as f:
    f.write(struct.pack(">iiii", 2051, n, rows, cols))
    f.write(r.randint(0, 256, (n, rows, cols)).astype(np.uint8).tobytes())
with open("data_feed/mnist/labels.idx1", "wb") as f:
    f.write(struct.pack(">ii", 2049, n))
    f.write(np.array([3, 1, 4, 1], np.uint8).tobytes())
subprocess.run(["convert_mnist_data", "data_feed/mnist/images.idx3",
                "data_feed/mnist/labels.idx1", "data_feed/mnist_lmdb", "--backend=lmdb"],
               check=True, capture_output=True)
subprocess.run(["compute_image_mean", "data/db/rgb_lmdb", "data_feed/mean.binaryproto",
                "--backend=lmdb"], check=True, capture_output=True)
with open("data_feed/hdf5.txt", "w") as f:
    f.write("data/hdf5/train0.h5\ndata/hdf5/train1.h5\n")
'''

# One case: argv = folder, case, phase, seed (-1: none), solver count, rank, forwards, out.
RECORD = r'''
import json, os, sys
import numpy as np
os.chdir(sys.argv[1])
import caffe
case, phase, seed, count, rank, forwards, out = sys.argv[2:9]
if int(seed) >= 0:
    caffe.set_random_seed(int(seed))
caffe.set_solver_count(int(count))
caffe.set_solver_rank(int(rank))
net = caffe.Net("data_feed/nets/%s.prototxt" % case,
                caffe.TRAIN if phase == "train" else caffe.TEST)
tops = [t for layer, l in zip(net._layer_names, net.layers)
        if l.type in ("Data", "ImageData", "HDF5Data", "WindowData")
        for t in net.top_names[layer]]
got = {}
for i in range(int(forwards)):
    net.forward()
    for t in tops:
        got["%s/%d/%s" % (case, i, t)] = net.blobs[t].data.copy()
np.savez(out, **got)
'''


def _data(source: str, backend: str, batch: int, transform: str = "", tops: str = "data label",
          extra: str = "") -> str:
    top = "".join(f' top: "{t}"' for t in tops.split())
    tp = f"\n  transform_param {{ {transform} }}" if transform else ""
    return (f'layer {{ name: "data" type: "Data"{top}\n  data_param {{ source: "{source}" '
            f'backend: {backend} batch_size: {batch} {extra}}}{tp} }}\n')


def _image(source: str, batch: int, params: str = "", transform: str = "") -> str:
    tp = f"\n  transform_param {{ {transform} }}" if transform else ""
    return (f'layer {{ name: "data" type: "ImageData" top: "data" top: "label"\n'
            f'  image_data_param {{ source: "{source}" root_folder: "data/images/" '
            f'batch_size: {batch} {params}}}{tp} }}\n')


def _hdf5(batch: int, params: str = "") -> str:
    return ('layer { name: "data" type: "HDF5Data" top: "data" top: "label" top: "extra"\n'
            f'  hdf5_data_param {{ source: "data_feed/hdf5.txt" batch_size: {batch} {params}}} }}\n')


def _window(batch: int, params: str, transform: str) -> str:
    return ('layer { name: "data" type: "WindowData" top: "data" top: "label"\n'
            f'  window_data_param {{ source: "data/windows.txt" root_folder: "data/" '
            f'batch_size: {batch} fg_threshold: 0.5 bg_threshold: 0.5 {params}}}\n'
            f'  transform_param {{ {transform} }} }}\n')


RGB = "data/db/rgb_lmdb"
MEAN = 'mean_file: "data_feed/mean.binaryproto"'
PNG = "data/db/rgba_png_lmdb"
JPG = "data/db/turned_jpg_leveldb"

# case -> (phase, seed, solver count, rank, forwards, prototxt)
CASES: dict[str, tuple[str, int, int, int, int, str]] = {
    "lmdb_test_crop_mean_value": ("test", -1, 1, 0, 3, _data(
        RGB, "LMDB", 2, "crop_size: 8 mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.5")),
    "lmdb_train_crop_mirror_mean_file": ("train", 1701, 1, 0, 4, _data(
        RGB, "LMDB", 2, f"crop_size: 7 mirror: true {MEAN} scale: 0.25")),
    "lmdb_test_mirror": ("test", 5, 1, 0, 3, _data(RGB, "LMDB", 2, f"mirror: true {MEAN}")),
    "lmdb_one_top": ("test", -1, 1, 0, 2, _data(RGB, "LMDB", 2, "", "data")),
    "leveldb_gray": ("test", -1, 1, 0, 2, _data(
        "data/db/gray_small_leveldb", "LEVELDB", 2, "scale: 0.1 mean_value: 7")),
    "mnist_train_crop": ("train", 3, 1, 0, 3, _data(
        "data_feed/mnist_lmdb", "LMDB", 3, "scale: 0.00390625 crop_size: 4")),
    "float_train_crop_mirror": ("train", 6, 1, 0, 2, _data(
        "data_feed/float_lmdb", "LMDB", 2, "crop_size: 2 mirror: true scale: 2 mean_value: 0.5")),
    "lmdb_rank1_of_2": ("train", -1, 2, 1, 3, _data(RGB, "LMDB", 2)),
    "lmdb_rank0_of_2": ("train", -1, 2, 0, 2, _data(RGB, "LMDB", 2)),
    "lmdb_test_rank1_of_2": ("test", -1, 2, 1, 2, _data(RGB, "LMDB", 2)),
    "encoded_native": ("test", -1, 1, 0, 1, _data(PNG, "LMDB", 2, "mean_value: 100")),
    "encoded_force_color": ("train", 9, 1, 0, 2, _data(
        PNG, "LMDB", 2, "force_color: true crop_size: 5 mirror: true")),
    "encoded_force_gray": ("test", -1, 1, 0, 1, _data(PNG, "LMDB", 2, "force_gray: true")),
    "encoded_jpeg": ("test", -1, 1, 0, 1, _data(JPG, "LEVELDB", 1)),
    "encoded_jpeg_color": ("test", -1, 1, 0, 1, _data(JPG, "LEVELDB", 1, "force_color: true")),
    "image_train_shuffle_crop_mirror": ("train", 11, 1, 0, 4, _image(
        "data/lists/rgb.txt", 2, "shuffle: true ", "crop_size: 8 mirror: true")),
    "image_test": ("test", -1, 1, 0, 2, _image(
        "data/lists/rgb.txt", 2, "", "mean_value: 128 scale: 2")),
    "image_train_rand_skip": ("train", 2, 1, 0, 2, _image(
        "data/lists/rgb.txt", 2, "rand_skip: 3 ")),
    "image_shuffle_rand_skip_mirror": ("test", 23, 1, 0, 3, _image(
        "data/lists/rgb.txt", 2, "shuffle: true rand_skip: 2 ", "mirror: true")),
    "image_gray": ("test", -1, 1, 0, 1, _image("data/lists/gray.txt", 2, "is_color: false ")),
    "image_color_of_gray": ("test", -1, 1, 0, 1, _image("data/lists/gray.txt", 2)),
    "image_resize_down": ("test", -1, 1, 0, 1, _image(
        "data/lists/rgb.txt", 3, "new_height: 9 new_width: 7 ")),
    "image_resize_up": ("test", -1, 1, 0, 1, _image(
        "data/lists/rgb.txt", 3, "new_height: 17 new_width: 23 ")),
    "image_gray_resize": ("test", -1, 1, 0, 1, _image(
        "data/lists/gray.txt", 2, "is_color: false new_height: 8 new_width: 8 ")),
    "image_jpeg": ("test", -1, 1, 0, 1, _image("data/lists/turned.txt", 1)),
    "hdf5": ("test", -1, 1, 0, 3, _hdf5(4)),
    "hdf5_shuffle": ("train", -1, 1, 0, 5, _hdf5(4, "shuffle: true ")),
    "hdf5_rank1_of_2": ("train", -1, 2, 1, 3, _hdf5(3)),
    "window_warp": ("train", 4, 1, 0, 3, _window(
        4, "fg_fraction: 0.5 scale: 0.5 ", "crop_size: 6 mirror: true mean_value: 10 "
        "mean_value: 20 mean_value: 30")),
    "window_context_square": ("train", 8, 1, 0, 3, _window(
        4, "fg_fraction: 0.25 context_pad: 1 crop_mode: \"square\" ",
        f"crop_size: 6 mirror: true {MEAN}")),
    "window_test_context": ("test", 3, 1, 0, 2, _window(
        3, "fg_fraction: 0.7 context_pad: 2 ", "crop_size: 7")),
    # Nets Caffe refuses at set-up: errors.json keeps its abort line.
    "err_mean_file_shape": ("test", -1, 1, 0, 1, _data(
        "data/db/gray_small_leveldb", "LEVELDB", 2, MEAN)),
    "err_mean_file_missing": ("test", -1, 1, 0, 1, _data(
        RGB, "LMDB", 2, 'mean_file: "data_feed/nope.binaryproto"')),
    "err_mean_value_count": ("test", -1, 1, 0, 1, _data(
        RGB, "LMDB", 2, "mean_value: 1 mean_value: 2")),
}


def _float_lmdb(path: Path) -> None:
    import lmdb

    sys.path.insert(0, str(ROOT))
    from caffe_fx.proto import caffe_pb2

    r = np.random.RandomState(20261203)
    env = lmdb.open(str(path), map_size=1 << 20, subdir=True)
    with env.begin(write=True) as txn:
        for i in range(3):
            values = r.randn(2, 3, 4).astype(np.float32)
            datum = caffe_pb2.Datum(channels=2, height=3, width=4, label=i + 5,
                                    float_data=values.ravel().tolist())
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()
    (path / "lock.mdb").unlink(missing_ok=True)


def _abort_line(stderr: str) -> str:
    lines = [ln.split("] ", 1)[-1] for ln in stderr.splitlines() if re.match(r"F\d{4} ", ln)]
    return (lines or stderr.strip().splitlines()[-1:] or ["no output"])[0].strip()


def _python(caffe_root: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["chroot", caffe_root, "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root",
         "GLOG_minloglevel=2", "PYTHONDONTWRITEBYTECODE=1", "python3", *argv],
        capture_output=True, text=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", default=os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
    args = parser.parse_args()
    if not Path(args.caffe_root, "usr/bin/caffe").exists():
        sys.exit(f"needs the reference Caffe chroot at {args.caffe_root} (install.sh)")
    batches: dict[str, np.ndarray] = {}
    cases: dict[str, dict] = {}
    errors: dict[str, dict] = {}
    with chroot_workdir(Path(args.caffe_root), "data_feed_goldens_") as (work, inside):
        shutil.copytree(GOLDEN / "data", work / "data")
        (work / "data_feed" / "nets").mkdir(parents=True)
        for case, (*_, text) in CASES.items():
            (work / "data_feed" / "nets" / f"{case}.prototxt").write_text(
                f'name: "{case}"\n{text}')
        _float_lmdb(work / "data_feed" / "float_lmdb")
        (work / "setup.py").write_text(SETUP)
        (work / "record.py").write_text(RECORD)
        proc = _python(args.caffe_root, [f"{inside}/setup.py", inside])
        if proc.returncode:
            sys.exit(f"setup failed:\n{proc.stderr[-3000:]}")
        for case, (phase, seed, count, rank, forwards, _) in CASES.items():
            out = work / f"{case}.npz"
            proc = _python(args.caffe_root, [
                f"{inside}/record.py", inside, case, phase, str(seed), str(count), str(rank),
                str(forwards), f"{inside}/{case}.npz"])
            if case.startswith("err_"):
                if proc.returncode == 0:
                    sys.exit(f"{case}: Caffe accepted it")
                errors[case] = {"phase": phase, "caffe": _abort_line(proc.stderr)}
                print(case, errors[case]["caffe"], flush=True)
                continue
            if proc.returncode:
                sys.exit(f"{case} failed:\n{proc.stderr[-3000:]}")
            with np.load(out) as f:
                got = {k: f[k] for k in f.files}
            batches.update(got)
            tops = sorted({k.split("/")[2] for k in got})
            cases[case] = {"phase": phase, "seed": seed if seed >= 0 else None,
                           "solver_count": count, "rank": rank, "forwards": forwards,
                           "tops": tops}
            print(case, {t: got[f"{case}/0/{t}"].shape for t in tops}, flush=True)
        feed = work / "data_feed"
        for db in ("mnist_lmdb", "float_lmdb"):  # Caffe's lock file is not the data
            (feed / db / "lock.mdb").unlink(missing_ok=True)
        np.savez_compressed(feed / "batches.npz", **batches)
        (feed / "cases.json").write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")
        (feed / "errors.json").write_text(json.dumps(errors, indent=1, sort_keys=True) + "\n")
        replace_folder(TARGET, feed, MADE)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
