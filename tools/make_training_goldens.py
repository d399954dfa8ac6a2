"""Writes tests/golden/training/: what real Caffe's solvers do over whole training runs.

Runs BVLC Caffe 1.0 from the reference chroot (/opt/caffe-ref) on a small Input-fed net
written here, and stores:

  tiny.prototxt                 the net (TRAIN: loss; TEST: loss and accuracy)
  init.caffemodel               its starting weights, drawn and saved by Caffe
  inputs.npz                    train batches data@k / label@k (fed at iteration k mod 3),
                                test_data / test_label (the test net's constant input)
  <case>_solver.prototxt        one solver per case (paths relative to this folder)
  <case>.npz                    `caffe-oracle solve`: loss, lr per iteration, final params
  run_<fmt>.npz / run_<fmt>.json  pycaffe in the chroot, solver.step(1) per iteration with
                                the batches set on the blobs: losses, lrs, final params,
                                Caffe's own log lines of every test (glog, parsed) and the
                                snapshot files it wrote; fmt = binary | hdf5
  snap_<fmt>/tiny_iter_5.*      Caffe's snapshot at iteration 5 (model + solverstate, the
                                solverstate's learned_net relative to this folder)

and for BVLC's LeNet and CIFAR-10 quick (read from ../shared/models, rewritten by
`published()` into the work folder, never stored here: licences):

  lenet/{train,test}_lmdb       synthetic MNIST (class patterns + noise) through Caffe's
                                convert_mnist_data
  cifar/{train,test}_lmdb, cifar/mean.binaryproto   synthetic 32x32 PNGs through
                                convert_imageset and compute_image_mean
  <kind>.npz / <kind>.json      pycaffe in the chroot, 50 x solver.step(1) from the
                                weights of `published_init()` (a seeded draw, not stored):
                                loss, lr per iteration, the last layer's final params,
                                Caffe's test lines

Developer tool, run by hand (root, for chroot):  sudo python tools/make_training_goldens.py
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir, replace_folder

GOLDEN = ROOT / "tests" / "golden" / "training"
ORACLE = ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"
ITERS = 12

NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 8 weight_filler { type: "gaussian" std: 0.5 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                        bias_filler { type: "constant" value: -0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""

COMMON = 'net: "tiny.prototxt"\nmax_iter: 12\ndisplay: 1\nsnapshot_after_train: false\n' \
    'random_seed: 7\nsolver_mode: CPU\n'
# Curves: every update rule, policy and regularization, iter_size 2, clipping.
CASES = {
    "sgd": 'type: "SGD"\nbase_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.005\n'
           'lr_policy: "step"\ngamma: 0.5\nstepsize: 4\n',
    "adam_iter2": 'type: "Adam"\nbase_lr: 0.05\nmomentum: 0.9\nmomentum2: 0.99\n'
                  'delta: 1e-6\niter_size: 2\nlr_policy: "multistep"\ngamma: 0.3\n'
                  'stepvalue: 3\nstepvalue: 7\nweight_decay: 0.001\n',
    "nesterov_l1": 'type: "Nesterov"\nbase_lr: 0.05\nmomentum: 0.8\nweight_decay: 0.01\n'
                   'regularization_type: "L1"\nlr_policy: "inv"\ngamma: 0.1\npower: 0.75\n',
    "adagrad_clip": 'type: "AdaGrad"\nbase_lr: 0.2\ndelta: 1e-7\nclip_gradients: 0.5\n'
                    'lr_policy: "exp"\ngamma: 0.95\n',
    "rmsprop": 'type: "RMSProp"\nbase_lr: 0.02\nrms_decay: 0.9\ndelta: 1e-6\n'
               'lr_policy: "poly"\npower: 1.5\n',
    "adadelta": 'type: "AdaDelta"\nbase_lr: 1.0\nmomentum: 0.95\ndelta: 1e-6\n'
                'lr_policy: "sigmoid"\ngamma: 0.5\nstepsize: 6\nweight_decay: 0.002\n',
}
# Test nets, snapshots at an interval and at the end (the pycaffe script below).
RUN = ('net: "tiny.prototxt"\ntest_iter: 2\ntest_interval: 4\nmax_iter: 12\ndisplay: 1\n'
       'type: "SGD"\nbase_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.005\nlr_policy: "step"\n'
       'gamma: 0.5\nstepsize: 4\nsnapshot: 5\nrandom_seed: 7\nsolver_mode: CPU\n')

# pycaffe in the chroot: argv = folder, solver, iters, out stem, [state to restore].
# glog's INFO lines go to a file (set before caffe loads), parsed for the test scores.
INNER = r'''
import json, os, re, sys
folder, solver_file, iters, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
resume = sys.argv[5] if len(sys.argv) > 5 else None
os.chdir(folder)
os.environ["GLOG_minloglevel"] = "0"
os.environ["GLOG_logtostderr"] = "1"
log_fd = os.open(out + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(log_fd, 2)
import numpy as np
import caffe
caffe.set_mode_cpu()
solver = caffe.get_solver(solver_file)
arrays = dict(np.load("inputs.npz"))
if resume is None:
    solver.net.copy_from("init.caffemodel")
else:
    solver.restore(resume)
for net in solver.test_nets:
    net.blobs["data"].data[...] = arrays["test_data"]
    net.blobs["label"].data[...] = arrays["test_label"]
losses, lrs = [], []
while solver.iter < iters:
    k = solver.iter % 3
    solver.net.blobs["data"].data[...] = arrays["data@%d" % k]
    solver.net.blobs["label"].data[...] = arrays["label@%d" % k]
    lrs.append(float(solver.lr))
    solver.step(1)
    losses.append(float(solver.net.blobs["loss"].data))
result = {"loss": np.array(losses), "lr": np.array(lrs)}
for name, blobs in solver.net.params.items():
    for i, b in enumerate(blobs):
        result["param/%s/%d" % (name, i)] = b.data.copy()
np.savez(out + ".npz", **result)
sys.stderr.flush()
tests, current = [], None
for line in open(out + ".log"):
    m = re.search(r"Iteration (\d+), Testing net \(#(\d+)\)", line)
    if m:
        current = {"iter": int(m.group(1)), "net": int(m.group(2)), "outputs": []}
        tests.append(current)
    m = re.search(r"Test net output #(\d+): (\S+) = (\S+)", line)
    if m and current is not None:
        current["outputs"].append([m.group(2), float(m.group(3))])
from caffe.proto import caffe_pb2
from google.protobuf import text_format
sp = text_format.Merge(open(solver_file).read(), caffe_pb2.SolverParameter())
folder = os.path.dirname(sp.snapshot_prefix) or "."
snaps = sorted(os.path.relpath(os.path.join(folder, f)) for f in os.listdir(folder)
               if "_iter_" in f)
json.dump({"tests": tests, "snapshots": snaps}, open(out + ".json", "w"), indent=1)
'''


# pycaffe in the chroot for the published nets: argv = folder, solver, iters, out stem,
# init weights, params to record (layer/i,...).
PUBLISHED = r'''
import json, os, re, sys
folder, solver_file, iters, out, init, wanted = sys.argv[1:7]
os.chdir(folder)
os.environ["GLOG_minloglevel"] = "0"
os.environ["GLOG_logtostderr"] = "1"
os.dup2(os.open(out + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
import numpy as np
import caffe
caffe.set_mode_cpu()
solver = caffe.get_solver(solver_file)
solver.net.copy_from(init)
losses, lrs = [], []
for _ in range(int(iters)):
    lrs.append(float(solver.lr))
    solver.step(1)
    losses.append(float(solver.net.blobs["loss"].data))
result = {"loss": np.array(losses), "lr": np.array(lrs)}
for key in wanted.split(","):
    layer, i = key.split("/")
    result["param/" + key] = solver.net.params[layer][int(i)].data.copy()
np.savez(out + ".npz", **result)
sys.stderr.flush()
tests, current = [], None
for line in open(out + ".log"):
    m = re.search(r"Iteration (\d+), Testing net \(#(\d+)\)", line)
    if m:
        current = {"iter": int(m.group(1)), "net": int(m.group(2)), "outputs": []}
        tests.append(current)
    m = re.search(r"Test net output #(\d+): (\S+) = (\S+)", line)
    if m and current is not None:
        current["outputs"].append([m.group(2), float(m.group(3))])
json.dump({"tests": tests}, open(out + ".json", "w"), indent=1)
'''
MODELS = ROOT.parent / "shared" / "models" / "BVLC+caffe" / "examples"
PUBLISHED_NETS = {  # kind: (solver, net, train batch, test batch, train/test records, params)
    "lenet": ("mnist/lenet_solver.prototxt", "mnist/lenet_train_test.prototxt", 64, 100,
              (128, 100), "ip2/0,ip2/1"),
    "cifar": ("cifar10/cifar10_quick_solver.prototxt",
              "cifar10/cifar10_quick_train_test.prototxt", 20, 20, (40, 20), "ip2/0,ip2/1"),
}
PUBLISHED_ITERS = 50


def published(kind: str, work: Path) -> Path:
    """BVLC's solver and net for `kind`, rewritten into `work` (relative paths; the data
    in <kind>/, smaller batches, 50 iterations, a test every 25 on one batch, CPU, no
    snapshots); returns the solver's path."""
    from google.protobuf import text_format

    from caffe_fx.proto import caffe_pb2

    solver_name, net_name, train_batch, test_batch, _, _ = PUBLISHED_NETS[kind]
    net = text_format.Merge((MODELS / net_name).read_text(), caffe_pb2.NetParameter())
    for layer in net.layer:
        if layer.type != "Data":
            continue
        test = any(r.phase == caffe_pb2.TEST for r in layer.include)
        layer.data_param.source = f"{kind}/{'test' if test else 'train'}_lmdb"
        layer.data_param.batch_size = test_batch if test else train_batch
        if layer.transform_param.HasField("mean_file"):
            layer.transform_param.mean_file = f"{kind}/mean.binaryproto"
    (work / f"{kind}_train_test.prototxt").write_text(text_format.MessageToString(net))
    sp = text_format.Merge((MODELS / solver_name).read_text(), caffe_pb2.SolverParameter())
    sp.net = f"{kind}_train_test.prototxt"
    del sp.test_iter[:]
    sp.test_iter.append(1)
    sp.test_interval, sp.display, sp.max_iter = 25, 10, PUBLISHED_ITERS
    sp.ClearField("snapshot")
    sp.snapshot_prefix = f"{kind}/snap"
    sp.snapshot_after_train = False
    sp.solver_mode = caffe_pb2.SolverParameter.CPU
    path = work / f"{kind}_solver.prototxt"
    path.write_text(text_format.MessageToString(sp))
    return path


def published_init(kind: str, work: Path) -> Path:
    """Starting weights for the published net: a seeded uniform draw of Xavier's scale
    (biases 0.01), written to <work>/<kind>_init.caffemodel; the same on every machine."""
    import contextlib

    import caffe_fx

    with contextlib.chdir(work):  # the net's data paths are relative to it
        gm = caffe_fx.compile(f"{kind}_train_test.prototxt", phase="train")
    rs = np.random.RandomState(1234)
    scale = 1.0 if kind == "lenet" else 0.2  # CIFAR's inputs are unscaled pixels - mean
    weights = {}
    for layer, sub in gm.meta["caffe"].modules.items():
        arrays = []
        for t in gm.get_submodule(sub).blob_tensors():
            shape = tuple(t.shape)
            if len(shape) > 1:
                bound = scale * np.sqrt(3.0 / int(np.prod(shape[1:])))
                arrays.append(rs.uniform(-bound, bound, shape).astype(np.float32))
            else:
                arrays.append(np.full(shape, 0.01, np.float32))
        weights[layer] = arrays
    path = work / f"{kind}_init.caffemodel"
    caffe_fx.save_caffemodel(path, weights, force=True)
    return path


def _images(kind: str, n: int, rs: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic images (uint8, N x H x W [x 3]): one smooth pattern per class + noise."""
    shape = (28, 28) if kind == "lenet" else (32, 32, 3)
    protos = rs.uniform(0, 1, (10, *shape))
    for _ in range(3):  # smooth
        protos = (protos + np.roll(protos, 1, 1) + np.roll(protos, 1, 2)) / 3
    labels = rs.randint(0, 10, n)
    noise = rs.normal(0, 25, (n, *shape))
    images = np.clip(protos[labels] * 255 + noise, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def make_published_data(caffe_root: Path, kind: str, work: Path, inside: str) -> None:
    """<work>/<kind>/{train,test}_lmdb (and cifar's mean.binaryproto) with Caffe's tools."""
    rs = np.random.RandomState(5 if kind == "lenet" else 6)
    folder = work / kind
    folder.mkdir()
    counts = PUBLISHED_NETS[kind][4]

    def tool(*argv: str) -> None:
        subprocess.run(["chroot", str(caffe_root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
                        "GLOG_minloglevel=2", *argv], check=True, capture_output=True)

    for split, n in zip(("train", "test"), counts):
        images, labels = _images(kind, n, rs)
        if kind == "lenet":  # the idx files convert_mnist_data reads
            (folder / f"{split}-images").write_bytes(
                np.array([2051, n, 28, 28], ">i4").tobytes() + images.tobytes())
            (folder / f"{split}-labels").write_bytes(
                np.array([2049, n], ">i4").tobytes() + labels.tobytes())
            tool("convert_mnist_data", f"{inside}/{kind}/{split}-images",
                 f"{inside}/{kind}/{split}-labels", f"{inside}/{kind}/{split}_lmdb",
                 "--backend=lmdb")
        else:
            from PIL import Image

            (folder / split).mkdir()
            lines = []
            for i, (img, label) in enumerate(zip(images, labels)):
                Image.fromarray(img).save(folder / split / f"{i:03d}.png")
                lines.append(f"{i:03d}.png {label}\n")
            (folder / f"{split}.txt").write_text("".join(lines))
            tool("convert_imageset", f"{inside}/{kind}/{split}/", f"{inside}/{kind}/{split}.txt",
                 f"{inside}/{kind}/{split}_lmdb", "--backend=lmdb")
    if kind == "cifar":
        tool("compute_image_mean", f"{inside}/{kind}/train_lmdb",
             f"{inside}/{kind}/mean.binaryproto", "--backend=lmdb")


def _inputs() -> dict[str, np.ndarray]:
    rs = np.random.RandomState(2026)
    out = {}
    for k in range(3):
        out[f"data@{k}"] = rs.randn(4, 6).astype(np.float32)
        out[f"label@{k}"] = rs.randint(0, 3, size=4).astype(np.float32)
    out["test_data"] = rs.randn(4, 6).astype(np.float32)
    out["test_label"] = rs.randint(0, 3, size=4).astype(np.float32)
    return out


def run_script(caffe_root: Path, inside: str, argv: list[str]) -> None:
    proc = subprocess.run(
        ["chroot", str(caffe_root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root",
         "PYTHONDONTWRITEBYTECODE=1", "python3", f"{inside}/inner.py", inside, *argv],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log = caffe_root / inside.lstrip("/") / f"{argv[2]}.log"  # glog's lines go there
        tail = log.read_text()[-3000:] if log.is_file() else ""
        raise RuntimeError(f"real pycaffe failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}{tail}")


def write_common(work: Path) -> None:
    """The net, the inputs and the chroot script, into `work` (also used by the tests
    that run real Caffe live on our snapshots)."""
    (work / "tiny.prototxt").write_text(NET)
    (work / "inner.py").write_text(INNER)
    np.savez(work / "inputs.npz", **_inputs())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", default=os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
    parser.add_argument("--force", action="store_true", help="replace existing goldens")
    args = parser.parse_args()
    if GOLDEN.exists() and any(GOLDEN.iterdir()) and not args.force:
        sys.exit(f"{GOLDEN} is not empty; pass --force to regenerate it")
    root = Path(args.caffe_root)
    names = ["tiny.prototxt", "init.caffemodel", "inputs.npz"]
    with chroot_workdir(root, "training_goldens_") as (work, inside):
        write_common(work)
        subprocess.run([str(ORACLE), "forward", str(work / "tiny.prototxt"), "--phase", "train",
                        "--seed", "7", "--save-weights", str(work / "init.caffemodel"),
                        "--out", str(work / "unused.npz")], check=True, cwd=work)
        arrays = dict(np.load(work / "inputs.npz"))
        np.savez(work / "feed.npz", **{k: v for k, v in arrays.items() if "@" in k})
        for case, text in CASES.items():
            (work / f"{case}_solver.prototxt").write_text(COMMON + text)
            subprocess.run([str(ORACLE), "solve", str(work / f"{case}_solver.prototxt"),
                            "--iters", str(ITERS), "--inputs", str(work / "feed.npz"),
                            "--weights", str(work / "init.caffemodel"),
                            "--out", str(work / f"{case}.npz")], check=True, cwd=work)
            names += [f"{case}_solver.prototxt", f"{case}.npz"]
        for fmt in ("binary", "hdf5"):
            (work / f"snap_{fmt}").mkdir()
            extra = 'snapshot_format: HDF5\n' if fmt == "hdf5" else ""
            (work / f"run_{fmt}_solver.prototxt").write_text(
                RUN + extra + f'snapshot_prefix: "snap_{fmt}/tiny"\n')
            run_script(root, inside, [f"run_{fmt}_solver.prototxt", str(ITERS), f"run_{fmt}"])
            for p in (work / f"snap_{fmt}").iterdir():  # keep iteration 5 only (small)
                if "_iter_5." not in p.name:
                    p.unlink()
            names += [f"run_{fmt}_solver.prototxt", f"run_{fmt}.npz", f"run_{fmt}.json",
                      f"snap_{fmt}"]
        (work / "published.py").write_text(PUBLISHED)
        for kind, spec in PUBLISHED_NETS.items():
            make_published_data(root, kind, work, inside)
            published(kind, work)
            published_init(kind, work)
            proc = subprocess.run(
                ["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root",
                 "PYTHONDONTWRITEBYTECODE=1", "python3", f"{inside}/published.py", inside,
                 f"{kind}_solver.prototxt", str(PUBLISHED_ITERS), kind,
                 f"{kind}_init.caffemodel", spec[5]], capture_output=True, text=True,
                check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{kind}: real pycaffe failed:\n{proc.stderr[-3000:]}\n"
                                   f"{(work / f'{kind}.log').read_text()[-3000:]}")
            keep = ["train_lmdb", "test_lmdb"] + (["mean.binaryproto"] if kind == "cifar" else [])
            for p in list((work / kind).iterdir()):
                if p.name not in keep:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            for db in ("train_lmdb", "test_lmdb"):
                (work / kind / db / "lock.mdb").unlink(missing_ok=True)
            names += [kind, f"{kind}.npz", f"{kind}.json"]
        replace_folder(GOLDEN, work, names)
    shutil.rmtree(GOLDEN / "__pycache__", ignore_errors=True)
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
