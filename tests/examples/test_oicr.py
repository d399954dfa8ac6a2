"""examples/oicr: OICR's own scripts train and test VGG_M on caffe_fx (issue #10).

The slow test copies ../shared/clients/oicr (ppengtang/oicr, Python 2) to a temporary
folder, ports it with examples/oicr/port.py, writes a tiny synthetic VOC 2007 and random
"pretrained" weights (examples/oicr/synthetic_voc.py), then runs the checkout's
tools/train_net.py (models/VGG_M/solver.prototxt and train.prototxt, a few iterations on
the CPU) and tools/test_net.py on its snapshot (detections and the mAP of OICR's
voc_eval.py; CorLoc of dis_eval.py on trainval).  The one change to the checkout's files
besides the port: the copy's solver.prototxt displays every iteration (display: 1), so
that each iteration's losses are logged.

The fast tests pin what the port and the facade need: the NumPy stand-ins of the Cython
modules against the .pyx loops (written out in float64 here), and a Python data layer
whose tops change shape at every forward, read twice (Split) and backpropagated.
"""
from __future__ import annotations

import importlib.util
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "oicr"
OICR = ROOT.parent / "shared" / "clients" / "oicr"


def _example(name: str) -> Any:
    """examples/oicr/utils/<name>.py, loaded by path (examples/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"oicr_{name}", EXAMPLE / "utils" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bbox_overlaps = _example("cython_bbox").bbox_overlaps
nms = _example("cython_nms").nms


# -- the NumPy stand-ins of lib/utils/*.pyx --------------------------------------------

def bbox_pyx(boxes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """bbox.pyx's loops, line by line, in Python floats (its DTYPE_t is float64)."""
    out = np.zeros((len(boxes), len(query)))
    for k, q in enumerate(query):
        area = (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
        for n, b in enumerate(boxes):
            iw = min(b[2], q[2]) - max(b[0], q[0]) + 1
            if iw > 0:
                ih = min(b[3], q[3]) - max(b[1], q[1]) + 1
                if ih > 0:
                    ua = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + area - iw * ih
                    out[n, k] = iw * ih / ua
    return out


def nms_pyx(dets: np.ndarray, thresh: float) -> list[int]:
    """nms.pyx's loops, line by line, in float32 as its np.float32_t variables."""
    f = np.float32
    x1, y1, x2, y2, s = (dets[:, k].astype(f) for k in range(5))
    areas = (x2 - x1 + f(1)) * (y2 - y1 + f(1))
    order = s.argsort()[::-1]
    suppressed = [False] * len(dets)
    keep = []
    for a in range(len(dets)):
        i = order[a]
        if suppressed[i]:
            continue
        keep.append(int(i))
        for b in range(a + 1, len(dets)):
            j = order[b]
            if suppressed[j]:
                continue
            w = max(f(0), min(x2[i], x2[j]) - max(x1[i], x1[j]) + f(1))
            h = max(f(0), min(y2[i], y2[j]) - max(y1[i], y1[j]) + f(1))
            inter = f(w * h)
            if f(inter / (areas[i] + areas[j] - inter)) >= f(thresh):
                suppressed[j] = True
    return keep


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 60, (n, 2)).round()
    wh = rng.uniform(-3, 40, (n, 2)).round()  # some empty boxes too
    return np.hstack([xy, xy + wh])


def test_bbox_overlaps_is_bbox_pyx() -> None:
    rng = np.random.default_rng(1)
    boxes, query = random_boxes(rng, 40), random_boxes(rng, 7)
    got = bbox_overlaps(boxes, query)
    assert got.dtype == np.float64 and got.shape == (40, 7)
    np.testing.assert_allclose(got, bbox_pyx(boxes, query), rtol=1e-15, atol=0)
    assert bbox_overlaps(boxes, np.zeros((0, 4))).shape == (40, 0)


@pytest.mark.parametrize("thresh", [0.3, 0.5])
def test_nms_is_nms_pyx(thresh: float) -> None:
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 60)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    dets = np.hstack([boxes, rng.uniform(0, 1, (60, 1))]).astype(np.float32)
    dets[5] = dets[4]  # an identical box: overlap 1, suppressed
    assert nms(dets, thresh) == nms_pyx(dets, thresh)
    assert nms(np.zeros((0, 5), np.float32), thresh) == []


# -- a Python data layer whose tops change shape, through a Split, backward ------------

DATA_LAYER = '''
import caffe_fx.pycaffe as caffe
import numpy as np


class Batches(caffe.Layer):
    """Each forward: x (n, 3) and t (n, 2), n = 2, 5, 3, ... (a RoIDataLayer in small)."""

    def setup(self, bottom, top):
        self.k = 0
        top[0].reshape(1, 3)
        top[1].reshape(1, 2)

    def forward(self, bottom, top):
        n = (2, 5, 3)[self.k % 3]
        self.k += 1
        rng = np.random.default_rng(self.k)
        for blob, width in zip(top, (3, 2)):
            blob.reshape(n, width)
            blob.data[...] = rng.uniform(-1, 1, (n, width))

    def reshape(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass
'''

NET = '''
layer { name: "data" type: "Python" top: "x" top: "t"
        python_param { module: "oicr_batches" layer: "Batches" } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 2
          weight_filler { type: "gaussian" std: 0.5 }
          bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss_a" type: "EuclideanLoss" bottom: "ip" bottom: "t" top: "loss_a" }
layer { name: "loss_b" type: "EuclideanLoss" bottom: "ip" bottom: "t" top: "loss_b"
        loss_weight: 0.5 }
'''


def test_python_data_layer_tops_change_shape_through_a_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As OICR's RoIDataLayer: the rois and labels tops take a new shape at each forward
    and feed several layers (Caffe inserts Splits); forward and backward follow each
    shape.  Expected values: EuclideanLoss = sum((a - b)^2) / 2n, d/da = (a - b) / n
    (euclidean_loss_layer.cpp), in float64."""
    import caffe_fx.pycaffe as caffe

    (tmp_path / "oicr_batches.py").write_text(DATA_LAYER)
    (tmp_path / "net.prototxt").write_text(NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        net = caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)
        w = net.params["ip"][0].data.astype(np.float64)
        bias = net.params["ip"][1].data.astype(np.float64)
        for n in (2, 5, 3, 2):
            net.clear_param_diffs()
            net.forward()
            net.backward()
            x, t = net.blobs["x"].data.astype(np.float64), net.blobs["t"].data.astype(np.float64)
            assert x.shape == (n, 3) and net.blobs["ip"].shape == (n, 2)
            ip = x @ w.T + bias
            loss = ((ip - t) ** 2).sum() / (2 * n)
            assert math.isclose(float(net.blobs["loss_a"].data), loss, rel_tol=1e-5)
            assert math.isclose(float(net.blobs["loss_b"].data), loss, rel_tol=1e-5)
            d_ip = 1.5 * (ip - t) / n
            np.testing.assert_allclose(net.blobs["ip"].diff, d_ip, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(net.params["ip"][0].diff, d_ip.T @ x, rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(net.params["ip"][1].diff, d_ip.sum(0), rtol=1e-5,
                                       atol=1e-6)
    finally:
        sys.modules.pop("oicr_batches", None)


# -- port.py -------------------------------------------------------------------------

# The 2to3 that port.py picks by default (the `oicr` fixture's port, checked by
# test_port_makes_the_checkout_python3); the other one is checked on its own here.
DEFAULT_2TO3 = "lib2to3" if importlib.util.find_spec("lib2to3") else "fissix"


def _assert_ported(root: Path, port_log: str, runner: str) -> None:
    """Every .py of the ported checkout compiles; fissix's extra fix_sorted is left out
    (it would turn voc_eval.py's np.sort(-confidence) into np.sort(key=...))."""
    assert f"2to3 ({runner})" in port_log
    for path in sorted(root.rglob("*.py")):
        compile(path.read_text(), str(path), "exec")
    voc_eval = (root / "lib" / "datasets" / "voc_eval.py").read_text()
    assert "np.sort(-confidence)" in voc_eval and "np.bool_" in voc_eval
    assert "print(" in (root / "tools" / "train_net.py").read_text()


@pytest.mark.parametrize("runner", [r for r in ("lib2to3", "fissix") if r != DEFAULT_2TO3])
def test_port_gives_python3_with_the_other_2to3(runner: str, tmp_path: Path) -> None:
    if not OICR.is_dir():
        pytest.skip(f"needs the OICR checkout at {OICR}")
    if importlib.util.find_spec(runner) is None:
        pytest.skip(f"{runner} is not installed")
    root = tmp_path / "oicr"
    shutil.copytree(OICR, root)
    done = subprocess.run([sys.executable, str(EXAMPLE / "port.py"), "--2to3", runner,
                           str(root)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_ported(root, done.stdout, runner)


# -- the drop-in module ---------------------------------------------------------------

DROP_IN = """
import json, sys
import caffe_fx_oicr
import caffe
import caffe_fx.pycaffe
from caffe_fx.pycaffe import net
caffe.set_mode_gpu()
caffe.set_device(0)
print(json.dumps({"facade": caffe is caffe_fx.pycaffe, "gpu": net._MODE["gpu"],
                  "np": __import__("numpy").random.randint(1 << 30)}))
"""


def _drop_in(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("CAFFE_FX_AS_CAFFE", "CAFFE_FX_OICR_DEVICE", "CAFFE_FX_OICR_SEED")}
    return subprocess.run([sys.executable, "-c", DROP_IN], cwd=EXAMPLE, env={**full, **env},
                          capture_output=True, text=True, check=False, timeout=300)


def test_drop_in_module_gives_the_facade_and_a_cpu_fallback() -> None:
    import json

    import torch

    done = _drop_in({"CAFFE_FX_OICR_DEVICE": "cpu", "CAFFE_FX_OICR_SEED": "7"})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["facade"] is True and got["gpu"] is False
    assert got["np"] == np.random.RandomState(7).randint(1 << 30)  # seeded at import
    assert done.stderr.count("running on the CPU") == 1
    assert "CAFFE_FX_OICR_DEVICE=cpu" in done.stderr
    if not torch.cuda.is_available():
        plain = _drop_in({})
        assert plain.returncode == 0, plain.stderr
        assert json.loads(plain.stdout.splitlines()[-1])["gpu"] is False
        assert "torch has no CUDA device; running on the CPU" in plain.stderr
    bad = _drop_in({"CAFFE_FX_OICR_DEVICE": "tpu"})
    assert bad.returncode != 0
    assert "DeviceError: CAFFE_FX_OICR_DEVICE='tpu' is not understood; allowed: cpu, gpu" \
        in bad.stderr


# -- OICR end to end ----------------------------------------------------------------

def _missing() -> str | None:
    if not OICR.is_dir():
        return f"needs the OICR checkout at {OICR}"
    for module, package in (("cv2", "opencv-python-headless"), ("easydict", "easydict"),
                            ("scipy", "scipy"), ("yaml", "PyYAML"), ("PIL", "pillow")):
        try:
            __import__(module)
        except ImportError:
            return f"OICR needs {module}: pip install {package}"
    if importlib.util.find_spec("lib2to3") is None and importlib.util.find_spec("fissix") is None:
        return "port.py needs lib2to3 (Python <= 3.12) or fissix: pip install fissix"
    return None


TRAIN_ITERS = 6
SEED = 1  # CAFFE_FX_OICR_SEED: the same images, samples and fillers at every run
CLASSES = ("car", "dog", "person")  # synthetic_voc.py's default classes
# Small images: the synthetic ones are 160 x 120; OICR's cfg scales them (shorter side).
CFG = ["TRAIN.SCALES", "(120,)", "TRAIN.MAX_SIZE", "200",
       "TEST.SCALES", "(120,)", "TEST.MAX_SIZE", "200"]


def _run(args: list[str], cwd: Path, log: Path) -> str:
    env = dict(os.environ, PYTHONWARNINGS="ignore", CAFFE_FX_OICR_DEVICE="cpu",
               CAFFE_FX_OICR_SEED=str(SEED))
    env.pop("CAFFE_FX_AS_CAFFE", None)  # the drop-in module is what makes `caffe` ours
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False, timeout=900)
    out = done.stdout + done.stderr
    log.write_text(out)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args[:1])} failed ({done.returncode}):\n{out[-6000:]}")
    return out


@pytest.fixture(scope="module")
def oicr(tmp_path_factory: pytest.TempPathFactory) -> dict:
    why = _missing()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("oicr")
    root = work / "oicr"
    shutil.copytree(OICR, root)
    logs = work / "logs"
    logs.mkdir()
    port = _run([str(EXAMPLE / "port.py"), str(root)], ROOT, logs / "port.log")
    data = _run([str(EXAMPLE / "synthetic_voc.py"), str(root), "--trainval", "4", "--test", "3",
                 "--weights", "models/VGG_M/test.prototxt:data/vgg_m_random.caffemodel"],
                root, logs / "data.log")
    solver = root / "models" / "VGG_M" / "solver.prototxt"
    text = solver.read_text()
    assert "\ndisplay: 20\n" in text
    solver.write_text(text.replace("\ndisplay: 20\n", "\ndisplay: 1\n"))
    train = _run(["tools/train_net.py", "--gpu", "0", "--solver", str(solver.relative_to(root)),
                  "--weights", "data/vgg_m_random.caffemodel", "--iters", str(TRAIN_ITERS),
                  "--set", *CFG], root, logs / "train.log")
    model = root / "output" / "default" / "voc_2007_trainval" / \
        f"vgg_m_oicr_iter_{TRAIN_ITERS}.caffemodel"
    test = _run(["tools/test_net.py", "--gpu", "0", "--def", "models/VGG_M/test.prototxt",
                 "--net", str(model), "--imdb", "voc_2007_test", "--set", *CFG],
                root, logs / "test.log")
    corloc = _run(["tools/test_net.py", "--gpu", "0", "--def", "models/VGG_M/test.prototxt",
                   "--net", str(model), "--imdb", "voc_2007_trainval", "--set", *CFG],
                  root, logs / "corloc.log")
    detections = root / "output" / "default" / "voc_2007_test" / model.stem
    reval = _run(["tools/reval.py", str(detections), "--imdb", "voc_2007_test"], root,
                 logs / "reval.log")
    return dict(root=root, port=port, data=data, train=train, test=test, corloc=corloc,
                reval=reval, model=model)


def _losses(log: str) -> list[dict[str, float]]:
    """Each displayed iteration's `Train net output #k: name = value` lines."""
    iters: list[dict[str, float]] = []
    for line in log.splitlines():
        if re.match(r"Iteration \d+ \(", line):
            iters.append({})
        m = re.match(r"\s+Train net output #\d+: (\w+) = (\S+)", line)
        if m:
            iters[-1][m.group(1)] = float(m.group(2))
    return iters


@pytest.mark.slow
def test_port_makes_the_checkout_python3(oicr: dict) -> None:
    root = oicr["root"]
    assert "imports caffe_fx_oicr first" in oicr["port"]
    _assert_ported(root, oicr["port"], DEFAULT_2TO3)
    for script in ("train_net.py", "test_net.py"):
        first = next(line for line in (root / "tools" / script).read_text().splitlines()
                     if line.startswith(("import ", "from ")))
        assert first.startswith("import caffe_fx_oicr")
    assert (root / "lib" / "utils" / "cython_bbox.py").is_file()
    again = subprocess.run([sys.executable, str(EXAMPLE / "port.py"), str(root)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "already ported" in again.stdout


@pytest.mark.slow
def test_train_net_runs_vgg_m_and_the_loss_falls(oicr: dict) -> None:
    log = oicr["train"]
    assert "running on the CPU" in log
    iters = _losses(log)
    names = {"loss_midn", "loss_oicr", "loss_oicr1", "loss_oicr2"}
    assert len(iters) == TRAIN_ITERS and all(set(it) == names for it in iters), iters
    assert all(math.isfinite(v) for it in iters for v in it.values()), iters
    # Every synthetic image has two labels, so the losses of different images are alike;
    # the first three iterations against the last three.
    totals = [sum(it.values()) for it in iters]
    midn = [it["loss_midn"] for it in iters]
    assert np.mean(totals[-3:]) < np.mean(totals[:3]), totals
    assert np.mean(midn[-3:]) < np.mean(midn[:3]), midn
    assert oicr["model"].is_file()
    assert f"Wrote snapshot to: {oicr['model']}" in log


@pytest.mark.slow
def test_test_net_detects_and_evaluates(oicr: dict) -> None:
    from scipy.io import loadmat

    root = oicr["root"]
    out = root / "output" / "default" / "voc_2007_test" / oicr["model"].stem
    with open(out / "detections.pkl", "rb") as f:
        all_boxes = pickle.load(f)
    with open(out / "detections_all.pkl", "rb") as f:
        every = pickle.load(f)
    proposals = loadmat(root / "data" / "selective_search_data" / "voc_2007_test.mat")
    counts = [len(b) for b in proposals["boxes"].ravel()]
    assert len(all_boxes) == 20 and all(len(per) == 3 for per in all_boxes)
    for per_class in all_boxes:
        for dets, n in zip(per_class, counts):
            assert dets.ndim == 2 and dets.shape[1] == 5 and 0 < len(dets) <= min(n, 100)
            assert np.isfinite(dets).all()
    for scores, boxes, n in zip(every["scores_all"], every["boxes_all"], counts):
        assert scores.shape == (n, 20) and boxes.shape == (n, 80)
        # The sum of three softmaxes over 21 classes (im_detect adds ic_prob, ic_prob1 and
        # ic_prob2, averaged over the flips), less the background column.
        assert (scores >= 0).all() and (scores.sum(1) <= 3 + 1e-4).all()
        assert np.isfinite(boxes).all() and (boxes[:, 2::4] >= boxes[:, 0::4]).all()
    m = re.search(r"^Mean AP = (\S+)$", oicr["test"], re.M)
    assert m, oicr["test"][-3000:]
    aps = {c: float(v) for c, v in re.findall(r"^AP for (\w+) = (\S+)$", oicr["test"], re.M)}
    assert len(aps) == 20 and all(0 <= v <= 1 for v in aps.values())
    assert math.isclose(float(m.group(1)), np.mean(list(aps.values())), abs_tol=1e-4)
    # Classes without a test object score 0 (voc_eval's recall divides by npos = 0).
    assert all(v == 0 for c, v in aps.items() if c not in CLASSES)
    with open(out / "car_pr.pkl", "rb") as f:
        assert set(pickle.load(f)) == {"rec", "prec", "ap"}


@pytest.mark.slow
def test_test_net_on_trainval_gives_corloc(oicr: dict) -> None:
    log = oicr["corloc"]
    corlocs = {c: float(v) for c, v in re.findall(r"^CorLoc for (\w+) = (\S+)$", log, re.M)}
    assert len(corlocs) == 20, log[-3000:]
    # dis_eval divides by the number of images holding the class: 0 (nan) for the others,
    # so OICR's mean is nan on a data set without every class.
    assert all(0 <= corlocs[c] <= 1 for c in CLASSES), corlocs
    assert all(math.isnan(v) for c, v in corlocs.items() if c not in CLASSES), corlocs
    assert re.search(r"^Mean CorLoc = nan$", log, re.M)
    root = oicr["root"]
    out = root / "output" / "default" / "voc_2007_trainval" / oicr["model"].stem
    with open(out / "car_corloc.pkl", "rb") as f:
        assert pickle.load(f)["corloc"] == pytest.approx(corlocs["car"], abs=1e-4)


@pytest.mark.slow
def test_reval_gives_test_nets_map(oicr: dict) -> None:
    """tools/reval.py re-evaluates test_net's detections.pkl (NMS again, voc_eval.py)."""
    maps = [re.findall(r"^Mean AP = (\S+)$", oicr[k], re.M) for k in ("test", "reval")]
    assert len(maps[0]) == 1 and maps[0] == maps[1], maps
