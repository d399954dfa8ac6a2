"""Regenerates tests/golden/plateau/: the SSD fork's "plateau" lr_policy, run by the fork.

weiliu89/caffe (branch ssd) lowers the rate by `gamma` once its smoothed loss has made no
new minimum for plateau_winsize[current_step] iterations (SGDSolver::GetLearningRate).
`caffe-oracle solve` cannot show that: it calls Step(1) per iteration (every Step
restarts the smoothed loss) and computes the lr it records itself (NaN for "plateau").
So each case here runs the fork's own pycaffe (CAFFE_ORACLE_FORK=ssd's overlay in the
oracle's chroot) as `caffe train` would: one solver, Step(n) for each of the case's
segments, the inputs fed by pycaffe's on_start callback (batch iter % K) and the raw loss
read by on_gradients_ready, with glog on so that the fork's own "Iteration N, lr = X",
"Iteration N, loss = <smoothed>" and "Plateau Status: Iteration N, step = K" lines give
the per-iteration rate, smoothed loss and step.  Case 1 is also run through
`CAFFE_ORACLE_FORK=ssd caffe-oracle solve` (average_loss 1, so Step(1) changes nothing)
and must agree with the callback run, and it snapshots at iteration 15 (the fork's
solverstate with minimum_loss and iter_last_event).  The script refuses a case whose
rate drops fewer than twice, or whose smoothed loss comes within 1e-3 (relative) of its
running minimum at any iteration (a compare a float rounding could flip).  Needs root and
../shared/caffe-oracle.

    python tools/make_plateau_goldens.py [--caffe-root /opt/caffe-ref]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir, replace_folder  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "plateau"
ORACLE = ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"
ITERS = 30
K = 5  # batches, cycled by iteration
MARGIN = 1e-3

NET = '''name: "plateau"
input: "data"
input_shape { dim: 8 dim: 4 }
input: "label"
input_shape { dim: 8 }
layer { name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1"
  inner_product_param { num_output: 6
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  inner_product_param { num_output: 3
    weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }
'''
# case -> (solver fields, the Step(n) calls)
CASES = {
    "sgd_window": ('type: "SGD" base_lr: 0.5 momentum: 0.9 gamma: 0.5 '
                   'plateau_winsize: 3 plateau_winsize: 4 plateau_winsize: 5 '
                   'average_loss: 1 snapshot: 15', (ITERS,)),
    "smoothed_iter_size2": ('type: "SGD" base_lr: 0.5 momentum: 0.9 gamma: 0.3 '
                            'weight_decay: 0.001 plateau_winsize: 2 plateau_winsize: 3 '
                            'plateau_winsize: 4 average_loss: 4 iter_size: 2', (ITERS,)),
    "two_steps": ('type: "Nesterov" base_lr: 0.3 momentum: 0.9 gamma: 0.5 '
                  'plateau_winsize: 3 plateau_winsize: 3 plateau_winsize: 6 '
                  'average_loss: 3', (11, ITERS - 11)),
}
RESUME_AT = 15

# Runs inside the chroot under the fork's pycaffe.
RUNNER = '''\
import os, sys
import numpy as np
import caffe
os.chdir(sys.argv[1])
case, segments = sys.argv[2], [int(n) for n in sys.argv[3].split(",")]
caffe.set_mode_cpu()
solver = caffe.get_solver(case + ".solver.prototxt")
if not os.path.exists("w0.caffemodel"):
    solver.net.save("w0.caffemodel")
solver.net.copy_from("w0.caffemodel")
arrays = np.load("inputs.npz")
feeds = sorted({int(k.split("@")[1]) for k in arrays.files})
losses = []
def on_start():
    k = feeds[solver.iter % len(feeds)]
    for blob in ("data", "label"):
        solver.net.blobs[blob].data[...] = arrays["%s@%d" % (blob, k)]
def on_gradients_ready():
    losses.append(float(solver.net.blobs["loss"].data))
solver.add_callback(on_start, on_gradients_ready)
for n in segments:
    solver.step(n)
out = {"loss": np.array(losses, dtype=np.float32)}
for name, blobs in solver.net.params.items():
    for i, b in enumerate(blobs):
        out["param/%s/%d" % (name, i)] = b.data.copy()
np.savez(case + "_fork.npz", **out)
'''

_LR = re.compile(r"sgd_solver\.cpp:\d+\] Iteration (\d+), lr = (\S+)")
_LOSS = re.compile(r"solver\.cpp:\d+\] Iteration (\d+), loss = (\S+)")
_STEP = re.compile(r"Plateau Status: Iteration (\d+), step = (\d+)")


def solver_text(case: str) -> str:
    fields, _ = CASES[case]
    text = (f'net: "net.prototxt"\nlr_policy: "plateau"\n{fields}\nmax_iter: {ITERS}\n'
            f'display: 1\nrandom_seed: 3\nsnapshot_prefix: "{case}"\n'
            'snapshot_after_train: false\n')
    return re.sub(r" (?=[a-z_]+:)", "\n", text)


def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    out = {}
    for k in range(K):
        out[f"data@{k}"] = rng.standard_normal((8, 4)).astype(np.float32)
        out[f"label@{k}"] = rng.integers(0, 3, 8).astype(np.float32)
    return out


def run_fork(caffe_root: Path, inside: str, case: str) -> str:
    """The RUNNER under the fork's pycaffe with glog to stderr; returns that log."""
    segments = ",".join(str(n) for n in CASES[case][1])
    proc = subprocess.run(
        ["chroot", str(caffe_root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root",
         "GLOG_logtostderr=1", "GLOG_minloglevel=0", "PYTHONPATH=/opt/fork-ssd/python",
         "PYTHONDONTWRITEBYTECODE=1", "python3", f"{inside}/run.py", inside, case, segments],
        capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the ssd fork failed on {case}:\n{proc.stderr[-3000:]}")
    return proc.stderr


def smoothed(losses: np.ndarray, segments: tuple[int, ...], average_loss: int) -> np.ndarray:
    """Solver::UpdateSmoothedLoss in float32, restarted by each Step call: only to check
    the fork's logged (6-digit) values and the margins."""
    f, out, it = np.float32, [], 0
    for n in segments:
        window: list[np.float32] = []
        value = f(0)
        for j in range(n):
            loss = f(losses[it])
            if len(window) < average_loss:
                window.append(loss)
                value = f((value * f(len(window) - 1) + loss) / f(len(window)))
            else:
                idx = j % average_loss
                value = f(value + (loss - window[idx]) / f(average_loss))
                window[idx] = loss
            out.append(value)
            it += 1
    return np.array(out, dtype=np.float32)


def record(case: str, log: str, fork: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    lr = {int(i): float(v) for i, v in _LR.findall(log)}
    logged = {int(i): float(v) for i, v in _LOSS.findall(log)}
    drops = [int(i) for i, _ in _STEP.findall(log)]
    if sorted(lr) != list(range(ITERS)) or sorted(logged) != list(range(ITERS)):
        raise RuntimeError(f"{case}: the fork logged lr for {sorted(lr)} and loss for "
                           f"{sorted(logged)}; expected every iteration")
    if len(drops) < 2:
        raise RuntimeError(f"{case}: the rate dropped {len(drops)} time(s); want >= 2")
    step = np.array([sum(d <= it for d in drops) for it in range(ITERS)], dtype=np.int32)
    fields = CASES[case][0]
    base = float(re.search(r"base_lr: (\S+)", fields).group(1))
    gamma = float(re.search(r"gamma: (\S+)", fields).group(1))
    average = int(re.search(r"average_loss: (\d+)", fields).group(1))
    rate = np.array([lr[i] for i in range(ITERS)])
    np.testing.assert_allclose(rate, base * gamma ** step, rtol=1e-5, err_msg=case)
    mine = smoothed(fork["loss"], CASES[case][1], average)
    shown = np.array([logged[i] for i in range(ITERS)])
    np.testing.assert_allclose(mine, shown, rtol=2e-5, err_msg=f"{case}: smoothed loss")
    minimum = np.float32(np.finfo(np.float32).max)
    for it, value in enumerate(mine):
        gap = abs(float(value) - float(minimum)) / abs(float(value))
        if gap < MARGIN:
            raise RuntimeError(f"{case}: iteration {it}: smoothed loss {value} is within "
                               f"{gap:.2g} of the minimum {minimum}; pick other inputs")
        minimum = min(minimum, value)
    out = {"lr": rate, "step": step, "smoothed": shown, "loss": fork["loss"],
           "segments": np.array(CASES[case][1], dtype=np.int32)}
    out.update({k: v for k, v in fork.items() if k.startswith("param/")})
    print(f"{case}: drops at {drops}, final lr {rate[-1]:g}")
    return out


def cross_check(work: Path, case: str, got: dict[str, np.ndarray]) -> None:
    """The same case through `CAFFE_ORACLE_FORK=ssd caffe-oracle solve` (Step(1) per
    iteration: the same run while average_loss is 1)."""
    subprocess.run([str(ORACLE), "solve", f"{case}.solver.prototxt", "--iters", str(ITERS),
                    "--inputs", "inputs.npz", "--weights", "w0.caffemodel",
                    "--out", f"{case}_oracle.npz"],
                   cwd=work, check=True, env={**os.environ, "CAFFE_ORACLE_FORK": "ssd"})
    oracle = dict(np.load(work / f"{case}_oracle.npz"))
    np.testing.assert_array_equal(oracle["loss"].astype(np.float32), got["loss"])
    for key in got:
        if key.startswith("param/"):
            np.testing.assert_array_equal(oracle[key], got[key], err_msg=key)
    print(f"{case}: caffe-oracle solve agrees")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caffe-root", type=Path, default=Path("/opt/caffe-ref"))
    args = ap.parse_args(argv)
    if not (args.caffe_root / "opt" / "fork-ssd" / "python").is_dir():
        sys.exit("the ssd fork's overlay is not unpacked: run any "
                 "`CAFFE_ORACLE_FORK=ssd caffe-oracle forward NET` once")
    keep = ["net.prototxt", "w0.caffemodel", "inputs.npz"]
    with chroot_workdir(args.caffe_root, "plateau_") as (work, inside):
        (work / "net.prototxt").write_text(NET)
        (work / "run.py").write_text(RUNNER)
        np.savez(work / "inputs.npz", **make_inputs())
        for case in CASES:
            (work / f"{case}.solver.prototxt").write_text(solver_text(case))
            log = run_fork(args.caffe_root, inside, case)
            fork = dict(np.load(work / f"{case}_fork.npz"))
            out = record(case, log, fork)
            np.savez_compressed(work / f"{case}.npz", **out)
            keep += [f"{case}.solver.prototxt", f"{case}.npz"]
            if "snapshot:" in CASES[case][0]:
                keep += [f"{case}_iter_{RESUME_AT}.caffemodel",
                         f"{case}_iter_{RESUME_AT}.solverstate"]
                cross_check(work, case, out)
        replace_folder(GOLDEN, work, keep)
    total = sum(p.stat().st_size for p in GOLDEN.iterdir())
    print(f"wrote {len(keep)} files, {total / 1024:.0f} KiB, to {GOLDEN}")


if __name__ == "__main__":
    main(sys.argv[1:])
