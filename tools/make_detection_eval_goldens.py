"""Regenerates tests/golden/detection_eval/cases.json: the SSD fork's mean AP in testing.

weiliu89/caffe (branch ssd) adds SolverParameter.eval_type "detection": Solver::Test
gathers DetectionEvaluate's rows over test_iter forwards and logs, per output, the mean
over labels of ComputeAP (ap_version 11point, MaxIntegral or Integral).  For each case a
test net reads seeded detections and ground truth from an HDF5 file (HDF5Data, one batch
per forward) into DetectionEvaluate; a solver with test_initialization runs one step
under the fork's pycaffe with glog on, and its log lines "Test net output #0:
detection_eval = X" and "classL: AP" are kept (glog prints 6 significant digits).  The
same files are remade by tests/training/test_detection_eval.py from the JSON.  Needs root,
the chroot and the `ssd` overlay (../shared/caffe-oracle, CAFFE_ORACLE_FORK=ssd).

    python tools/make_detection_eval_goldens.py [--caffe-root /opt/caffe-ref]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "detection_eval"
ORACLE = ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"
FORWARDS, IMAGES, DETS, GTS, CLASSES = 3, 2, 12, 6, 4  # labels 1..3, background 0

# (name, ap_version, evaluate_difficult_gt, overlap_threshold)
CASES = [
    ("integral", "Integral", True, 0.5),
    ("max_integral", "MaxIntegral", True, 0.5),
    ("11point", "11point", True, 0.5),
    ("11point_skip_difficult", "11point", False, 0.5),
    ("integral_strict_overlap", "Integral", False, 0.7),
]


def make_inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(FORWARDS, 1, DETS, 7) detections and (FORWARDS, 1, GTS, 8) ground truth: boxes in
    [0, 1]; half the detections jitter a gt box of their label, the rest are random;
    scores drawn from a few values so that ties occur."""
    r = np.random.RandomState(seed)
    det = np.zeros((FORWARDS, 1, DETS, 7), np.float32)
    gt = np.zeros((FORWARDS, 1, GTS, 8), np.float32)
    for f in range(FORWARDS):
        for g in range(GTS):
            x0, y0 = r.uniform(0, 0.6, 2)
            w, h = r.uniform(0.15, 0.4, 2)
            gt[f, 0, g] = [g % IMAGES, r.randint(1, CLASSES), g, x0, y0, x0 + w, y0 + h,
                           float(r.rand() < 0.25)]
        for d in range(DETS):
            if d % 2 == 0:
                src = gt[f, 0, r.randint(GTS)]
                box = src[3:7] + r.normal(0, 0.04, 4)
                item, label = src[0], src[1]
            else:
                x0, y0 = r.uniform(0, 0.6, 2)
                box = np.array([x0, y0, x0 + r.uniform(0.1, 0.4), y0 + r.uniform(0.1, 0.4)])
                item, label = r.randint(IMAGES), r.randint(1, CLASSES)
            det[f, 0, d] = [item, label, r.choice([0.9, 0.8, 0.8, 0.6, 0.4, 0.3]), *box]
    return det, gt


def nets(h5list: str, difficult: bool, overlap: float) -> tuple[str, str]:
    train = '''name: "train"
layer { name: "x" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 1 dim: 2 } shape { dim: 1 dim: 1 }
    data_filler { type: "constant" value: 1 } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
  inner_product_param { num_output: 1 weight_filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "loss" }
'''
    test = f'''name: "test"
layer {{ name: "data" type: "HDF5Data" top: "det" top: "gt"
  hdf5_data_param {{ source: "{h5list}" batch_size: 1 }} }}
layer {{ name: "detection_eval" type: "DetectionEvaluate" bottom: "det" bottom: "gt"
  top: "detection_eval"
  detection_evaluate_param {{ num_classes: {CLASSES} background_label_id: 0
    overlap_threshold: {overlap} evaluate_difficult_gt: {str(difficult).lower()} }} }}
'''
    return train, test


def solver_text(train: str, test: str, ap_version: str) -> str:
    return f'''train_net: "{train}"
test_net: "{test}"
test_iter: {FORWARDS}
test_interval: 1
test_initialization: true
base_lr: 0
lr_policy: "fixed"
max_iter: 1
display: 0
snapshot_after_train: false
solver_mode: CPU
eval_type: "detection"
ap_version: "{ap_version}"
show_per_class_result: true
'''


def write_case(folder: Path, name: str, ap_version: str, difficult: bool, overlap: float,
               det: np.ndarray, gt: np.ndarray, inside: str | None = None) -> Path:
    """The case's HDF5 file, list, nets and solver in `folder` (paths written as `inside`,
    the folder as the chroot sees it); returns the solver's path here."""
    import h5py

    where = inside or str(folder)
    with h5py.File(folder / f"{name}.h5", "w") as f:
        f["det"], f["gt"] = det, gt
    (folder / f"{name}.txt").write_text(f"{where}/{name}.h5\n")
    train, test = nets(f"{where}/{name}.txt", difficult, overlap)
    (folder / f"{name}_train.prototxt").write_text(train)
    (folder / f"{name}_test.prototxt").write_text(test)
    solver = folder / f"{name}_solver.prototxt"
    solver.write_text(solver_text(f"{where}/{name}_train.prototxt",
                                  f"{where}/{name}_test.prototxt", ap_version))
    return solver


_SCRIPT = """
import sys, caffe
caffe.set_mode_cpu()
solver = caffe.get_solver(sys.argv[1])
solver.step(1)
"""


def run_fork(caffe_root: Path, solver_inside: str, work: Path) -> tuple[float, dict[int, float]]:
    script = work / "step.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run(
        ["chroot", str(caffe_root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root",
         "GLOG_minloglevel=0", "GLOG_logtostderr=1", "PYTHONDONTWRITEBYTECODE=1",
         "PYTHONPATH=/opt/fork-ssd/python", "python3",
         "/" + script.relative_to(caffe_root).as_posix(), solver_inside],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the ssd fork failed:\n{proc.stderr[-3000:]}")
    first_test = proc.stderr.split("Iteration 1,")[0]
    m = re.search(r"Test net output #0: detection_eval = (\S+)", first_test)
    if not m:
        raise RuntimeError(f"no mAP in the fork's log:\n{proc.stderr[-3000:]}")
    aps = {int(k): float(v) for k, v in re.findall(r"\] class(\d+): (\S+)", first_test)}
    return float(m.group(1)), aps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--caffe-root", type=Path, default=Path("/opt/caffe-ref"))
    a = ap.parse_args()
    # Any ssd-fork run unpacks the overlay into the chroot (/opt/fork-ssd).
    subprocess.run([str(ORACLE), "upgrade", os.devnull, "/tmp/unused.prototxt"],
                   env={**os.environ, "CAFFE_ORACLE_FORK": "ssd"}, capture_output=True,
                   check=False)
    if not (a.caffe_root / "opt" / "fork-ssd" / "python").is_dir():
        sys.exit("the ssd overlay is not unpacked in the chroot (run caffe-oracle with "
                 "CAFFE_ORACLE_FORK=ssd once)")
    records = []
    with chroot_workdir(a.caffe_root, "detection_eval_") as (work, inside):
        for i, (name, version, difficult, overlap) in enumerate(CASES):
            det, gt = make_inputs(1000 + i)
            write_case(work, name, version, difficult, overlap, det, gt, inside)
            mean_ap, aps = run_fork(a.caffe_root, f"{inside}/{name}_solver.prototxt", work)
            records.append(dict(name=name, ap_version=version, evaluate_difficult_gt=difficult,
                                overlap_threshold=overlap, det=det.tolist(), gt=gt.tolist(),
                                mean_ap=mean_ap, class_ap=aps))
            print(f"{name}: mAP {mean_ap}, per class {aps}")
    GOLDEN.mkdir(parents=True, exist_ok=True)
    tmp = GOLDEN / ".cases.json.tmp"
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(GOLDEN / "cases.json")


if __name__ == "__main__":
    main()
