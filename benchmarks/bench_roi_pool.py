"""ROIPooling benchmark: caffe_fx::roi_pool against torchvision.ops.roi_pool.

    CAFFE_FX_TORCHVISION_PYTHON=/tmp/tv/bin/python python benchmarks/bench_roi_pool.py
        [--rounds 7] [--threads 1,2] [--devices cpu,cuda] [--out benchmarks/ROI_POOL.md]

The Fast R-CNN size: VGG16's conv5_3 of a 600 x 1000 image (1 x 512 x 38 x 63, after ReLU),
2000 rois, 7 x 7 bins, spatial_scale 1/16.  The rois are seeded boxes inside the image whose
widths and heights are log-uniform from 16 pixels to the image's size, as proposals are.
Forward (no grad; ours also returns the argmax, as torchvision's kernel does) and backward
(the features' diff for a seeded top diff, after a forward with grad) are timed as the
median of --rounds after a warm-up, the two libraries alternating round by round, for each
thread count of --threads (torch.set_num_threads on both sides).

torchvision cannot be installed beside this environment's torch, so it runs in another
interpreter, CAFFE_FX_TORCHVISION_PYTHON (e.g. `python -m venv /tmp/tv && /tmp/tv/bin/pip
install torch torchvision`), driven over a pipe: both see the same .npz inputs and the same
thread count.  Its roi_pool rounds differently (no +1 on the roi ends, C round of x *
scale): its numbers are not compared, only its time.  Writes the Markdown table, with the
machine and versions, to --out.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# caffe_fx before torch: libgomp then runs with the spin caffe_fx chooses for users
# (caffe_fx/_threads.py); an OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the caller wins.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import caffe_fx  # noqa: E402,F401  (first; see above)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import ROOT, cpu_model, csv_list  # noqa: E402

from caffe_fx.ops import roi_pool as R  # noqa: E402

SHAPE = (1, 512, 38, 63)
IMAGE = (600, 1000)  # H, W
NUM_ROIS = 2000
POOLED = (7, 7)
SCALE = 1.0 / 16

CHILD = r"""
import json, sys, time
import numpy as np, torch, torchvision
path, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
with np.load(path) as f:
    x0, rois0, g0 = (torch.from_numpy(f[k]) for k in ("x", "rois", "g"))
print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__}),
      flush=True)
for line in sys.stdin:
    op, device = line.split()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x, rois, g = x0.to(device), rois0.to(device), g0.to(device)
    if op == "forward":
        with torch.no_grad():
            sync(); t = time.perf_counter()
            torchvision.ops.roi_pool(x, rois, (7, 7), 1.0 / 16)
            sync(); dt = time.perf_counter() - t
    else:
        xg = x.clone().requires_grad_(True)
        top = torchvision.ops.roi_pool(xg, rois, (7, 7), 1.0 / 16)
        sync(); t = time.perf_counter()
        top.backward(g)
        sync(); dt = time.perf_counter() - t
    print(dt, flush=True)
"""


NOTES = """\
How the CPU kernel gets there (caffe_fx/ops/roi_pool.py): the forward builds, over the
channels-last map, tables of window maxima (values) and window minima of int64 keys that
pack the order-preserving bits of each value with its position (so the min is Caffe's
first maximum and its low word the argmax): one level per bin height, one per power of two
of bin width.  Each bin is then two row gathers of C channels and one reduction, a few
rois at a time (8 MiB of keys per chunk); no Python loop over rois x bins.  The
backward is one serial 1-D scatter_add_ per chunk (Caffe's order of additions).
torchvision's kernels are C++ loops over rois, bins and their elements.

The machine is shared (2 cores, other jobs running), so single runs vary by 20-30%; the
two libraries alternate round by round to see the same load.  CUDA rows appear when the
machine has a GPU and CuPy (`pip install caffe_fx[cuda]`).
"""


def inputs(seed: int = 0) -> dict[str, np.ndarray]:
    r = np.random.RandomState(seed)
    h, w = IMAGE
    bw = np.exp(r.uniform(np.log(16), np.log(w), NUM_ROIS))
    bh = np.exp(r.uniform(np.log(16), np.log(h), NUM_ROIS))
    x1, y1 = r.uniform(0, w - bw), r.uniform(0, h - bh)
    rois = np.c_[np.zeros(NUM_ROIS), x1, y1, x1 + bw, y1 + bh].astype(np.float32)
    x = np.maximum(r.randn(*SHAPE), 0).astype(np.float32)
    g = r.randn(NUM_ROIS, SHAPE[1], *POOLED).astype(np.float32)
    return {"x": x, "rois": rois, "g": g}


def ours(op: str, device: str, data: dict[str, torch.Tensor]) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x, rois, g = (data[k].to(device) for k in ("x", "rois", "g"))
    if op == "forward":
        with torch.no_grad():
            sync()
            t = time.perf_counter()
            torch.ops.caffe_fx.roi_pool(x, rois, *POOLED, SCALE, "")
            sync()
            return time.perf_counter() - t
    xg = x.clone().requires_grad_(True)
    top = R.roi_pool(xg, rois, *POOLED, SCALE)
    sync()
    t = time.perf_counter()
    top.backward(g)
    sync()
    return time.perf_counter() - t


class Torchvision:
    """torchvision in its own interpreter, one timed call per request."""

    def __init__(self, python: str, npz: Path, threads: int) -> None:
        self.proc = subprocess.Popen([python, "-c", CHILD, str(npz), str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.versions = json.loads(self._line())

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the torchvision interpreter exited (see its stderr above)")
        return line

    def time(self, op: str, device: str) -> float:
        self.proc.stdin.write(f"{op} {device}\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def run(device: str, op: str, rounds: int, data: dict[str, torch.Tensor],
        tv: Torchvision | None) -> tuple[float, float | None]:
    ours(op, device, data)  # warm-up
    if tv:
        tv.time(op, device)
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(ours(op, device, data))
        if tv:
            theirs.append(tv.time(op, device))
    return statistics.median(mine), statistics.median(theirs) if theirs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", default=str(torch.get_num_threads()),
                    help="thread counts, comma-separated")
    ap.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ROI_POOL.md")
    a = ap.parse_args()
    python = os.environ.get("CAFFE_FX_TORCHVISION_PYTHON")
    arrays = inputs()
    data = {k: torch.from_numpy(v) for k, v in arrays.items()}
    rows = []
    versions = "torchvision not run (set CAFFE_FX_TORCHVISION_PYTHON)"
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "inputs.npz"
        np.savez(npz, **arrays)
        for threads in (int(t) for t in csv_list(a.threads)):
            torch.set_num_threads(threads)
            tv = Torchvision(python, npz, threads) if python else None
            try:
                if tv:
                    versions = (f"torchvision {tv.versions['torchvision']} on torch "
                                f"{tv.versions['torch']}")
                for device in csv_list(a.devices):
                    for op in ("forward", "backward"):
                        m, t = run(device, op, a.rounds, data, tv)
                        rows.append((device, threads if device == "cpu" else "-", op, m, t))
            finally:
                if tv:
                    tv.close()
    lines = ["| device | threads | pass | caffe_fx::roi_pool (ms) | torchvision roi_pool (ms) "
             "| torchvision / caffe_fx |", "|---|---:|---|---:|---:|---:|"]
    for device, threads, op, m, t in rows:
        ratio = f"{t / m:.2f}" if t else "-"
        lines.append(f"| {device} | {threads} | {op} | {m * 1e3:.0f} | "
                     f"{'-' if t is None else f'{t * 1e3:.0f}'} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    a.out.write_text(
        "# ROIPooling: caffe_fx::roi_pool against torchvision.ops.roi_pool\n\n"
        "Written by `benchmarks/bench_roi_pool.py` (its docstring says what is timed): "
        f"features {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} x {SHAPE[3]} (VGG16 conv5_3 of a "
        f"600 x 1000 image), {NUM_ROIS} rois, {POOLED[0]} x {POOLED[1]} bins.\n\n"
        f"{table}\n\n"
        f"Median of {a.rounds} rounds; {cpu_model()}, {os.cpu_count()} cores; torch "
        f"{torch.__version__}; {versions}; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.\n\n"
        + NOTES)


if __name__ == "__main__":
    main()
