"""Writes tests/golden/cli/: what real Caffe's `caffe time`, `caffe test` and `caffe train` print.

Inside the reference chroot (/opt/caffe-ref), with its h5py and pycaffe, it makes a tiny
HDF5Data net (HDF5 files, lists, train/test prototxt, solvers, Caffe-filled starting
weights), then runs Caffe's own binary on it and stores

  hdf5/ train_list.txt test_list.txt net.prototxt   the net (paths relative to this
                                                    folder, which must be the current one)
  time_net.prototxt          an Input-fed net for `caffe time`
  init.caffemodel            weights from Caffe's fillers (pycaffe, set_random_seed(1))
  solver.prototxt, solver_iter2.prototxt            SGD, iter_size 1 and 2
  caffe_time.txt             `caffe time -model time_net.prototxt -iterations 3`, from
                             "Performing Forward" on, glog prefixes removed
  caffe_test.txt             `caffe test -model net.prototxt -weights init.caffemodel
                             -iterations 4`, from "Running for" on
  caffe_train.txt, caffe_train_iter2.txt   `caffe train -solver S -weights init.caffemodel`
                             from "Solving" on
  trained.caffemodel, trained_iter2.caffemodel      the weights Caffe trained
  solver_snap4.prototxt, snap/resume_iter_4.*       a run snapshotting at iteration 4
  caffe_resume.txt, trained_resume.caffemodel       `caffe train -snapshot` from it
  python/                    a net of Python layers (pydata.py: a data layer and a scaling
                             layer; Caffe's binary built WITH_PYTHON_LAYER, PYTHONPATH the
                             folder): net.prototxt, solver.prototxt, init.caffemodel,
                             caffe_train.txt, trained.caffemodel, caffe_test.txt

Developer tool, run by hand (root, for chroot):  sudo python tools/make_cli_goldens.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir, replace_folder, run_in_chroot

GOLDEN = ROOT / "tests" / "golden" / "cli"
NAMES = ("hdf5", "train_list.txt", "test_list.txt", "net.prototxt", "time_net.prototxt",
         "init.caffemodel", "solver.prototxt", "solver_iter2.prototxt", "caffe_time.txt",
         "caffe_test.txt", "caffe_train.txt", "caffe_train_iter2.txt", "trained.caffemodel",
         "trained_iter2.caffemodel", "solver_snap4.prototxt", "snap", "caffe_resume.txt",
         "trained_resume.caffemodel", "python")

# Runs inside the chroot (Python 3.9).
INNER = r'''
import os, re, subprocess, sys
import h5py
import numpy as np

os.chdir(sys.argv[1])
r = np.random.RandomState(20261202)
os.makedirs("hdf5")
for name, rows in (("train", 20), ("test", 12)):
    x = r.randn(rows, 6).astype(np.float32)
    y = (r.randint(0, 3, rows)).astype(np.float32)
    with h5py.File("hdf5/%s.h5" % name, "w") as f:
        f["data"] = x
        f["label"] = y
    with open("%s_list.txt" % name, "w") as f:
        f.write("hdf5/%s.h5\n" % name)

NET = """name: "cli_hdf5"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
        hdf5_data_param { source: "train_list.txt" batch_size: 4 } }
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TEST }
        hdf5_data_param { source: "test_list.txt" batch_size: 5 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
        include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
TIME_NET = """name: "cli_time"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""
SOLVER = """net: "net.prototxt"
test_iter: 2
test_interval: 4
base_lr: 0.1
momentum: 0.9
weight_decay: 0.01
lr_policy: "step"
gamma: 0.5
stepsize: 4
display: 2
max_iter: 8
iter_size: %d
snapshot_prefix: "%s"
solver_mode: CPU
"""
with open("net.prototxt", "w") as f:
    f.write(NET)
with open("time_net.prototxt", "w") as f:
    f.write(TIME_NET)
for name, k in (("solver", 1), ("solver_iter2", 2), ("solver_snap4", 1)):
    with open(name + ".prototxt", "w") as f:
        f.write(SOLVER % (k, "snap/" + ("resume" if name == "solver_snap4" else name))
                + ("snapshot: 4\n" if name == "solver_snap4" else ""))
os.makedirs("snap")

import caffe
caffe.set_random_seed(1)
caffe.Net("net.prototxt", caffe.TEST).save("init.caffemodel")

PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ")


def caffe_tool(out, start, *argv, pythonpath=None):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "GLOG_logtostderr": "1",
           "GLOG_minloglevel": "0"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    p = subprocess.run(["/usr/bin/caffe"] + list(argv), env=env, capture_output=True,
                       universal_newlines=True)
    if p.returncode != 0:
        sys.exit("caffe %s failed:\n%s" % (" ".join(argv), p.stderr[-3000:]))
    lines = [PREFIX.sub("", line) for line in p.stderr.splitlines() if PREFIX.match(line)]
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    with open(out, "w") as f:
        f.write("\n".join(lines[first:]) + "\n")


caffe_tool("caffe_time.txt", "Performing Forward", "time", "-model", "time_net.prototxt",
           "-iterations", "3")
caffe_tool("caffe_test.txt", "Running for", "test", "-model", "net.prototxt", "-weights",
           "init.caffemodel", "-iterations", "4")
for name, out in (("solver", "caffe_train.txt"), ("solver_iter2", "caffe_train_iter2.txt")):
    caffe_tool(out, "Solving", "train", "-solver", name + ".prototxt", "-weights",
               "init.caffemodel")
os.rename("snap/solver_iter_8.caffemodel", "trained.caffemodel")
os.rename("snap/solver_iter2_iter_8.caffemodel", "trained_iter2.caffemodel")
caffe_tool("/dev/null", "Solving", "train", "-solver", "solver_snap4.prototxt", "-weights",
           "init.caffemodel")
for name in os.listdir("snap"):
    if not name.startswith("resume_iter_4."):
        os.remove("snap/" + name)
caffe_tool("caffe_resume.txt", "Solving", "train", "-solver", "solver_snap4.prototxt",
           "-snapshot", "snap/resume_iter_4.solverstate")
os.rename("snap/resume_iter_8.caffemodel", "trained_resume.caffemodel")
for name in os.listdir("snap"):
    if not name.startswith("resume_iter_4."):
        os.remove("snap/" + name)

PYDATA = """import caffe
import numpy as np


class Batches(caffe.Layer):
    \"\"\"data (4, 6) and label (4,): batch k drawn from RandomState(param_str + k).\"\"\"

    def setup(self, bottom, top):
        if len(bottom) != 0 or len(top) != 2:
            raise Exception("Batches: no bottoms, two tops")
        self.seed = int(self.param_str)
        self.k = 0

    def reshape(self, bottom, top):
        top[0].reshape(4, 6)
        top[1].reshape(4)

    def forward(self, bottom, top):
        r = np.random.RandomState(self.seed + self.k)
        self.k += 1
        top[0].data[...] = r.randn(4, 6)
        top[1].data[...] = r.randint(0, 3, 4)

    def backward(self, top, propagate_down, bottom):
        pass


class Twice(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 2 * top[0].diff
"""
PYNET = """name: "cli_python"
layer { name: "data" type: "Python" top: "data" top: "label" include { phase: TRAIN }
        python_param { module: "pydata" layer: "Batches" param_str: "1" } }
layer { name: "data" type: "Python" top: "data" top: "label" include { phase: TEST }
        python_param { module: "pydata" layer: "Batches" param_str: "100" } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "uniform" min: -0.5 max: 0.5 } } }
layer { name: "twice" type: "Python" bottom: "ip" top: "twice"
        python_param { module: "pydata" layer: "Twice" } }
layer { name: "accuracy" type: "Accuracy" bottom: "twice" bottom: "label" top: "accuracy"
        include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "twice" bottom: "label" top: "loss" }
"""
os.makedirs("python/snap")
os.chdir("python")
with open("pydata.py", "w") as f:
    f.write(PYDATA)
with open("net.prototxt", "w") as f:
    f.write(PYNET)
with open("solver.prototxt", "w") as f:
    f.write(SOLVER.replace("iter_size: %d\n", "") % "snap/py")
sys.path.insert(0, os.getcwd())
caffe.set_random_seed(1)
caffe.Net("net.prototxt", caffe.TEST).save("init.caffemodel")
here = os.getcwd()
caffe_tool("caffe_train.txt", "Solving", "train", "-solver", "solver.prototxt", "-weights",
           "init.caffemodel", pythonpath=here)
os.rename("snap/py_iter_8.caffemodel", "trained.caffemodel")
for name in os.listdir("snap"):
    os.remove("snap/" + name)
caffe_tool("caffe_test.txt", "Running for", "test", "-model", "net.prototxt", "-weights",
           "init.caffemodel", "-iterations", "3", pythonpath=here)
for name in os.listdir("__pycache__"):
    os.remove("__pycache__/" + name)
os.rmdir("__pycache__")
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caffe-root", type=Path, default=Path("/opt/caffe-ref"))
    args = ap.parse_args()
    with chroot_workdir(args.caffe_root, "cli-goldens-") as (work, inside):
        (work / "inner.py").write_text(INNER)
        run_in_chroot(args.caffe_root, f"{inside}/inner.py", [inside])
        replace_folder(GOLDEN, work, NAMES)
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
