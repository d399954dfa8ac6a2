"""Writes tests/golden/pycaffe_misc/: what real pycaffe's solvers, Classifier, Detector,
Net.save_hdf5/load_hdf5 and Net.set_input_arrays do (python/caffe/_caffe.cpp,
classifier.py, detector.py, pycaffe.py).

Runs BVLC pycaffe 1.0 from the reference chroot (/opt/caffe-ref, Python 3.9) on small
nets written here (Input and MemoryData layers only: no LMDB), and stores:

  *.prototxt               the nets and solvers
  weights.caffemodel       random weights of classifier.prototxt, drawn and saved by Caffe
  weights.caffemodel.h5    the same weights as real Net.save_hdf5 writes them
  images/*.png             two small images for Detector.detect_windows
  solvers.json             per solver case: class, blob/param names and shapes, param, lr
  outputs.npz              Classifier/Detector predictions, MemoryData blobs per forward
  hooks.json               the order Net's before/after_forward/backward hooks and the
                           solver's callbacks run in; Timer, solver_count/solver_rank
  tiny_saved.prototxt      what Net.save writes for tiny.prototxt in TEST (Net::ToProto),
                           without its blobs
  errors.json              pycaffe's exception (class, message) per error case, Net() on
                           files it cannot open among them
                           (bad_solver.prototxt is not run: Caffe aborts on it, a CHECK)

caffe.io.load_image fails in this chroot (skimage's old `as_grey` keyword, see
make_io_goldens.py); Detector runs with load_image's body under the new `as_gray`.

Developer tool, run by hand (root, for chroot):  sudo python tools/make_pycaffe_misc_goldens.py
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir, replace_folder, run_in_chroot

GOLDEN = ROOT / "tests" / "golden" / "pycaffe_misc"

FILES = {
    "tiny.prototxt": """name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 5 dim: 5 } shape { dim: 4 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  include { stage: "wide" }
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  exclude { stage: "wide" }
  inner_product_param { num_output: 3 bias_term: false weight_filler { type: "xavier" } } }
layer { name: "acc" type: "Accuracy" bottom: "ip1" bottom: "label" top: "acc"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
""",
    "nesterov_solver.prototxt": """net: "tiny.prototxt"
test_iter: 1
test_iter: 2
test_interval: 10
base_lr: 0.01
lr_policy: "fixed"
max_iter: 10
display: 5
solver_type: NESTEROV
test_state { stage: "wide" }
test_state { }
""",
    "adam_solver.prototxt": """train_net: "tiny.prototxt"
test_net: "tiny.prototxt"
test_iter: 3
test_interval: 5
base_lr: 0.3
lr_policy: "inv"
gamma: 0.1
power: 0.75
max_iter: 100
type: "Adam"
train_state { stage: "wide" }
""",
    "sgd_solver.prototxt": """net: "tiny.prototxt"
base_lr: 0.05
lr_policy: "step"
gamma: 0.5
stepsize: 3
""",
    "bad_solver.prototxt": """net: "tiny.prototxt"
solver_type: ADAM
type: "Adam"
""",
    "classifier.prototxt": """name: "cls"
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 3 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "ip1" top: "prob" }
""",
    "memory.prototxt": """name: "mem"
layer { name: "data" type: "MemoryData" top: "data" top: "label"
  memory_data_param { batch_size: 2 channels: 2 height: 3 width: 3 } }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
""",
}

# Runs inside the chroot (Python 3.9), in the folder holding FILES.
INNER = r'''
import json, os, sys
import numpy as np
from PIL import Image
import skimage.io
from skimage import img_as_float
import caffe

here = sys.argv[1]
os.chdir(here)
rng = np.random.RandomState(20240611)
outs, errs, solvers = {}, {}, {}


def record_error(name, fn):
    try:
        fn()
    except Exception as e:
        errs[name] = [type(e).__name__, str(e)]
    else:
        errs[name] = None


def describe_net(net):
    return {"blobs": [[k, list(v.data.shape)] for k, v in net.blobs.items()],
            "params": [[k, [list(b.data.shape) for b in v]] for k, v in net.params.items()],
            "layers": list(net._layer_names), "inputs": list(net.inputs),
            "outputs": list(net.outputs)}


# ---- solvers ---------------------------------------------------------------------------
for name, make in [("nesterov", lambda: caffe.get_solver("nesterov_solver.prototxt")),
                   ("adam", lambda: caffe.get_solver("adam_solver.prototxt")),
                   ("sgd", lambda: caffe.get_solver("sgd_solver.prototxt")),
                   ("adagrad_class", lambda: caffe.AdaGradSolver("adam_solver.prototxt"))]:
    s = make()
    solvers[name] = {
        "class": type(s).__name__, "mro": [c.__name__ for c in type(s).__mro__[:3]],
        "dir": [d for d in dir(s) if not d.startswith("__")], "iter": s.iter, "lr": s.lr,
        "param": {"max_iter": s.param.max_iter, "display": s.param.display,
                  "base_lr": s.param.base_lr, "layer_wise_reduce": s.param.layer_wise_reduce},
        "net": describe_net(s.net), "test_nets": [describe_net(t) for t in s.test_nets]}

# ---- Classifier ------------------------------------------------------------------------
net = caffe.Net("classifier.prototxt", caffe.TEST)
for layer, blobs in net.params.items():
    for b in blobs:
        b.data[...] = rng.randn(*b.data.shape) * 0.5
net.save("weights.caffemodel")
net.save_hdf5("weights.caffemodel.h5")
images = [rng.rand(9, 11, 3).astype(np.float32), rng.rand(7, 7, 3).astype(np.float32),
          rng.rand(10, 8, 3).astype(np.float32) * 200]
for i, im in enumerate(images):
    outs[f"image_{i}"] = im
mean = np.array([0.2, 0.4, 0.6], np.float32)
outs["mean"] = mean
plain = caffe.Classifier("classifier.prototxt", "weights.caffemodel")
outs["classify_plain_oversample"] = plain.predict(images[:2])
outs["classify_plain_center"] = plain.predict(images[:2], oversample=False)
full = caffe.Classifier("classifier.prototxt", "weights.caffemodel", image_dims=(8, 9),
                        mean=mean, input_scale=0.5, raw_scale=2.0, channel_swap=(2, 1, 0))
outs["classify_full_oversample"] = full.predict(images)
outs["classify_full_center"] = full.predict(images, oversample=False)

# ---- Detector --------------------------------------------------------------------------
def load_image(filename, color=True):  # caffe.io.load_image with as_gray (see docstring)
    img = img_as_float(skimage.io.imread(filename, as_gray=not color)).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


caffe.io.load_image = load_image
os.makedirs("images", exist_ok=True)
for i, shape in enumerate([(12, 14, 3), (9, 10, 3)]):
    Image.fromarray(rng.randint(0, 256, shape).astype(np.uint8)).save(f"images/det{i}.png")
det = caffe.Detector("classifier.prototxt", "weights.caffemodel", mean=mean,
                     raw_scale=255.0, channel_swap=(2, 1, 0))
windows = [("images/det0.png", np.array([[0, 0, 6, 7], [3, 2, 12, 14]])),
           ("images/det1.png", np.array([[1, 1, 8, 9]]))]
found = det.detect_windows(windows)
outs["detect_windows"] = np.stack([d["prediction"] for d in found])
outs["detect_windows_order"] = np.array([[int(d["filename"][-5]), *d["window"]] for d in found])
padded = caffe.Detector("classifier.prototxt", "weights.caffemodel", context_pad=1)
record_error("detect_context_pad", lambda: padded.detect_windows(windows))

# ---- HDF5 weights ----------------------------------------------------------------------
loaded = caffe.Net("classifier.prototxt", caffe.TEST)
loaded.load_hdf5("weights.caffemodel.h5")
x = rng.randn(3, 3, 6, 6).astype(np.float32)
outs["hdf5_input"] = x
outs["hdf5_prob"] = loaded.forward(data=x)["prob"].copy()

# ---- MemoryData ------------------------------------------------------------------------
caffe.set_random_seed(5)
mem = caffe.Net("memory.prototxt", caffe.TRAIN)
outs["memory_label_shape_setup"] = np.array(mem.blobs["label"].data.shape)
data = rng.randn(4, 2, 3, 3).astype(np.float32)
labels = np.array([0, 2, 1, 1], np.float32)
outs["memory_data"], outs["memory_labels"] = data, labels
mem.set_input_arrays(data, labels)
for k in range(3):
    mem.forward()
    outs[f"memory_{k}_data"] = mem.blobs["data"].data.copy()
    outs[f"memory_{k}_label"] = mem.blobs["label"].data.copy()
    outs[f"memory_{k}_ip1"] = mem.blobs["ip1"].data.copy()
for name, blob in [("ip1_w", mem.params["ip1"][0]), ("ip1_b", mem.params["ip1"][1])]:
    outs[f"memory_{name}"] = blob.data.copy()
record_error("memory_not_multiple", lambda: mem.set_input_arrays(data[:3], labels[:3]))
record_error("memory_wrong_dims", lambda: mem.set_input_arrays(
    rng.randn(4, 3, 3, 3).astype(np.float32), labels))
record_error("memory_float64", lambda: mem.set_input_arrays(data.astype(np.float64), labels))
record_error("memory_not_memory", lambda: loaded.set_input_arrays(data, labels))

# ---- files Net() cannot open (CheckFile: a RuntimeError, not a CHECK abort) -----------
record_error("net_missing_prototxt", lambda: caffe.Net("nope.prototxt", caffe.TEST))
record_error("net_missing_weights", lambda: caffe.Net("classifier.prototxt", caffe.TEST,
                                                      weights="nope.caffemodel"))
record_error("net_missing_weights_legacy", lambda: caffe.Net("classifier.prototxt",
                                                             "nope.caffemodel", caffe.TEST))

# ---- Net hooks (before/after_forward/backward) and solver callbacks: who runs when -------
hooks = {}
events = []
hooked = caffe.Net("tiny.prototxt", caffe.TRAIN)
for kind in ("before_forward", "after_forward", "before_backward", "after_backward"):
    getattr(hooked, kind)(lambda i, k=kind: events.append([k, i]))
hooked.blobs["data"].data[...] = rng.randn(*hooked.blobs["data"].data.shape)
hooked.blobs["label"].data[...] = [0, 1, 2, 1]
for name, run in [("forward", lambda: hooked.forward()),
                  ("backward", lambda: hooked.backward()),
                  ("forward_partial", lambda: hooked.forward(start="relu1", end="ip1")),
                  ("backward_partial", lambda: hooked.backward(start="ip1", end="relu1"))]:
    events.clear()
    run()
    hooks[name] = list(events)
hooks["layer_names"] = list(hooked._layer_names)
# _caffe.cpp's members that pycaffe.py builds Net's properties from
hooks["private"] = {
    "blob_names": list(hooked._blob_names), "nblobs": len(hooked._blobs),
    "top_ids": [list(hooked._top_ids(i)) for i in range(len(hooked.layers))],
    "bottom_ids": [list(hooked._bottom_ids(i)) for i in range(len(hooked.layers))],
    "inputs": list(hooked._inputs), "outputs": list(hooked._outputs),
    "blob_loss_weights": list(hooked._blob_loss_weights)}
loss = hooked._forward(0, len(hooked.layers) - 1)
hooks["private"]["forward_returns"] = [type(loss).__name__,
                                       abs(loss - float(hooked.blobs["loss"].data)) < 1e-6]
hooks["private"]["forward_partial_returns"] = hooked._forward(1, 2)
hooks["private"]["backward_returns"] = repr(hooked._backward(len(hooked.layers) - 1, 0))
stepper = caffe.SGDSolver("sgd_solver.prototxt")
events.clear()
stepper.net.before_forward(lambda i: events.append(["before_forward", i]))
stepper.net.after_backward(lambda i: events.append(["after_backward", i]))
stepper.add_callback(lambda: events.append(["on_start"]),
                     lambda: events.append(["on_gradients"]))
stepper.step(2)
hooks["solver_step_2"] = list(events)
timer = caffe.Timer()
timer.start()
timer.stop()
hooks["timer"] = [type(timer.ms).__name__, timer.ms >= 0]
hooks["solver_count_rank"] = [caffe.solver_count(), caffe.solver_rank()]
caffe.set_solver_count(3)
caffe.set_solver_rank(2)
hooks["solver_count_rank_set"] = [caffe.solver_count(), caffe.solver_rank()]
caffe.set_solver_count(1)
caffe.set_solver_rank(0)

# ---- Net.save's NetParameter (Net::ToProto), its blobs left out ----------------------
from caffe.proto import caffe_pb2
from google.protobuf import text_format
caffe.Net("tiny.prototxt", caffe.TEST).save("tiny_saved.caffemodel")
saved = caffe_pb2.NetParameter()
with open("tiny_saved.caffemodel", "rb") as f:
    saved.ParseFromString(f.read())
for layer in saved.layer:
    del layer.blobs[:]
with open(os.path.join(here, "tiny_saved.prototxt"), "w") as f:
    f.write(text_format.MessageToString(saved))

np.savez(os.path.join(here, "outputs.npz"), **outs)
with open(os.path.join(here, "hooks.json"), "w") as f:
    json.dump(hooks, f, indent=1, sort_keys=True)
with open(os.path.join(here, "errors.json"), "w") as f:
    json.dump(errs, f, indent=1, sort_keys=True)
with open(os.path.join(here, "solvers.json"), "w") as f:
    json.dump(solvers, f, indent=1, sort_keys=True)
'''

OUTPUTS = ("outputs.npz", "errors.json", "hooks.json", "solvers.json", "tiny_saved.prototxt",
           "weights.caffemodel", "weights.caffemodel.h5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", default=os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
    parser.add_argument("--force", action="store_true", help="replace existing goldens")
    args = parser.parse_args()
    if GOLDEN.exists() and any(GOLDEN.iterdir()) and not args.force:
        sys.exit(f"{GOLDEN} is not empty; pass --force to regenerate it")
    with chroot_workdir(Path(args.caffe_root), "misc_goldens_") as (work, inside):
        for name, text in FILES.items():
            (work / name).write_text(text)
        (work / "inner.py").write_text(INNER)
        run_in_chroot(args.caffe_root, f"{inside}/inner.py", [inside])
        replace_folder(GOLDEN, work, (*FILES, *OUTPUTS, "images"))
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
