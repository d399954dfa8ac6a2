"""OICR VGG_M training on the CPU: caffe_fx against the fork that trains it (issue #10).

    python benchmarks/bench_oicr.py [--image 224x320] [--rois 128] [--iters 3]
        [--threads N] [--no-caffe] [--out benchmarks/OICR.md | --no-write]

The net is ../shared/models/ppengtang+oicr/models/VGG_M/train.prototxt with its Python
layers' tops as inputs (tools/make_oicr_goldens.py's oracle_net; OICR's own Dropout 0.5
kept), one image of --image and --rois rois, the same random weights on both sides (made
once by the fork: `forward --randomize 7 --save-weights`).  Timed, in one run:

1. caffe_fx.pycaffe.SGDSolver on OICR's solver.prototxt: `solver.step(1)` (iter_size 2:
   two forward/backward passes, then the momentum SGD update), the median of --iters;
2. the plain GraphModule (`caffe_fx.compile(..., phase="train")`): one forward and
   backward from the summed losses (zero_grad first), the median of --iters;
3. the fork (ppengtang/caffe, CPU, OpenBLAS, `CAFFE_ORACLE_FORK=oicr`): `caffe-oracle time
   --backward --phase train` for forward + backward, and the solver iteration as the
   wall-clock difference of `caffe-oracle solve --iters 1+K` and `--iters 1` over K
   (the same net loading and weight reading cancel).

Prints a Markdown table and writes it, with the machine, to benchmarks/OICR.md.  A script,
not a test: timing never lives in tests.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# caffe_fx before torch: libgomp then runs with the spin caffe_fx chooses for users
# (caffe_fx/_threads.py); an OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the caller wins.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import caffe_fx  # noqa: E402,F401  (first; see above)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import ROOT, cpu_model, oracle  # noqa: E402

from caffe_fx import pycaffe  # noqa: E402
from tools import make_oicr_goldens as M  # noqa: E402


def minibatch(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """An image ~ U(-4, 4), rois inside it, 3 image labels and OICR targets of any class."""
    r = np.random.RandomState(seed)
    _, _, h, w = shapes["data"]
    n = shapes["rois"][0]
    x1 = r.randint(0, w // 2, n)
    y1 = r.randint(0, h // 2, n)
    x2 = np.minimum(x1 + r.randint(16, w // 2, n), w - 1)
    y2 = np.minimum(y1 + r.randint(16, h // 2, n), h - 1)
    out = {"data": r.uniform(-4, 4, shapes["data"]).astype(np.float32),
           "rois": np.stack([np.zeros(n), x1, y1, x2, y2], 1).astype(np.float32),
           "labels": np.zeros((1, 20), np.float32)}
    out["labels"][0, r.choice(20, 3, replace=False)] = 1
    for _, labels_ic, weights in M.OICR_LAYERS:
        out[labels_ic] = r.randint(0, 21, n).astype(np.float32)
        out[weights] = r.uniform(0.05, 1.0, n).astype(np.float32)
    return out


def median_s(one: Callable[[], None], iters: int) -> float:
    one()  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        one()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fork(*args: str) -> str:
    os.environ["CAFFE_ORACLE_FORK"] = "oicr"
    return oracle(*args)


def caffe_solver_s(solver: Path, weights: Path, inputs: Path, iters: int) -> float:
    def wall(n: int) -> float:
        t0 = time.perf_counter()
        fork("solve", str(solver), "--weights", str(weights), "--inputs", str(inputs),
             "--iters", str(n), "--out", str(solver.parent / "solve.npz"))
        return time.perf_counter() - t0
    return (wall(1 + iters) - wall(1)) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", default="224x320", help="H x W of the one image")
    ap.add_argument("--rois", type=int, default=128)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-caffe", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "OICR.md"))
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    h, w = (int(v) for v in a.image.lower().split("x"))
    shapes = M.input_shapes((1, 3, h, w), a.rois)
    arrays = minibatch(shapes)
    with tempfile.TemporaryDirectory(prefix="bench_oicr_") as tmp:
        work = Path(tmp)
        net = work / "train.prototxt"
        net.write_text(M.oracle_net(M.VGG_M / "train.prototxt", shapes, dropout=True))
        solver = work / "solver.prototxt"
        solver.write_text(M.solver_text(net))
        inputs = work / "in.npz"
        np.savez(inputs, **arrays)
        weights = work / "w.caffemodel"
        fork("forward", str(net), "--phase", "train", "--inputs", str(inputs), "--out",
             str(work / "out.npz"), "--randomize", "7", "--save-weights", str(weights))

        s = pycaffe.SGDSolver(str(solver))
        s.net.copy_from(str(weights))

        def step() -> None:
            for k, v in arrays.items():
                s.net.blobs[k].data[...] = v
            s.step(1)
        facade_step = median_s(step, a.iters)
        s = None  # frees the facade before the GraphModule is built

        gm = caffe_fx.compile(str(net), str(weights), phase="train")
        feeds = {k: torch.from_numpy(v) for k, v in arrays.items()}
        losses = [b for b in gm.meta["caffe"].outputs if b.startswith("loss")]

        def fwd_bwd() -> None:
            gm.zero_grad(set_to_none=True)
            out = gm(**feeds)
            torch.stack([out[b] for b in losses]).sum().backward()
        gm_pass = median_s(fwd_bwd, a.iters)
        gm = None  # frees it before Caffe runs

        caffe_pass = caffe_step = None
        if not a.no_caffe:
            line = fork("time", str(net), "--weights", str(weights), "--inputs", str(inputs),
                        "--iters", str(a.iters), "--phase", "train", "--backward")
            caffe_pass = float(line.split("median")[1].split()[0]) / 1000.0
            caffe_step = caffe_solver_s(solver, weights, inputs, a.iters)

    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s ({1 / v:.2f}/s)"

    def ratio(c: float | None, ours: float) -> str:
        return "-" if c is None else f"{c / ours:.2f}x"

    table = ("| OICR VGG_M, 1 x 3 x %d x %d, %d rois | caffe_fx | fork (Caffe) | fork / "
             "caffe_fx |\n|---|---|---|---|\n" % (h, w, a.rois))
    table += (f"| solver iteration (iter_size 2 + SGD update), caffe_fx.pycaffe.SGDSolver | "
              f"{cell(facade_step)} | {cell(caffe_step)} | {ratio(caffe_step, facade_step)} |\n")
    table += (f"| forward + backward, compile()'s GraphModule | {cell(gm_pass)} | "
              f"{cell(caffe_pass)} | {ratio(caffe_pass, gm_pass)} |\n")
    print(table)
    if a.no_write:
        return
    head = ("# OICR VGG_M training on the CPU (benchmarks/bench_oicr.py)\n\n"
            f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), Python "
            f"{platform.python_version()}; the fork is ppengtang/caffe (CPU, OpenBLAS) run "
            "by ../shared/caffe-oracle (CAFFE_ORACLE_FORK=oicr).  Medians of "
            f"{a.iters} timed runs after one warm-up; times per iteration, iterations per "
            "second in brackets.  Load average (1, 5, 15 min) when it finished: "
            + ", ".join(f"{v:.2f}" for v in os.getloadavg())
            + " (above the core count, other processes shared the CPU and both columns ran "
            "slower, one after the other).\n\n")
    Path(a.out).write_text(head + table)


if __name__ == "__main__":
    main()
