"""Solver-iteration benchmark: one `solver.step(1)` on the CPU, caffe_fx against Caffe 1.0.

    python benchmarks/bench_solver.py [--nets lenet,cifar10_quick,caffenet] [--iters 10]
        [--warmup 2] [--budget 20] [--threads N] [--workdir DIR] [--quick] [--markdown]
        [--out benchmarks/SOLVER.md | --no-write] [--no-caffe]

For every net, its published solver (LeNet's lenet_solver, CIFAR-10 quick's
cifar10_quick_solver, CaffeNet's solver) on the TRAIN net of bench_train.py (the data
layer replaced by an Input of data and label, at the batch sizes of the issue: 64, 100 and
32), without test nets, snapshots or display, timed four ways in the same run from the same
weights and batch (the first three interleaved, one step of each in turn; the loop's time
cuts the count to fit --budget), `--rounds` (3) times, in turn with Caffe's process; each
cell is the median of its column's round medians:

1. the pycaffe facade: `caffe_fx.pycaffe.get_solver(S)`, then `solver.step(1)`;
2. `caffe_fx.Solver(S, weights=W, inputs=...)`, then `solver.step(1)`;
3. a plain PyTorch loop over compile()'s GraphModule: `opt, sched =
   caffe_fx.optim.from_solver(S, gm)`, then `opt.zero_grad(); gm(**x)["loss"].backward();
   opt.step(); sched.step()`;
4. real Caffe (pycaffe in the oracle's chroot): `caffe.get_solver(S)`, `solver.step(1)`.

One iteration is forward, backward and the update (Caffe's ApplyUpdate), as Caffe's
`Iteration N` lines count them.  Prints a Markdown table (median ms per iteration, the
ratios Caffe / ours) and writes it to benchmarks/SOLVER.md; the issue's target is at least
2x Caffe.  A script, not a test: timing never lives in tests.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# caffe_fx before torch: libgomp then runs with the spin caffe_fx chooses for users
# (caffe_fx/_threads.py); an OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the caller wins.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import caffe_fx  # noqa: E402,F401  (first; see above)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import MODELS, ROOT, cpu_model, csv_list, first_line, fmt, wait_policy  # noqa: E402
from bench_train import NETS as TRAIN_NETS  # noqa: E402
from bench_train import Spec, busy, commit, prepare, time_rounds  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from caffe_fx import pycaffe  # noqa: E402
from caffe_fx.proto import caffe_pb2  # noqa: E402
from tools._chroot import run_in_chroot  # noqa: E402

CAFFE_ROOT = Path(os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
TARGET = 2.0  # Caffe / ours at least (issue: "at least 2x Caffe on CPU")


@dataclass(frozen=True)
class Bench:
    net: Spec
    solver: str  # under MODELS


NETS = {
    "lenet": Bench(Spec(**{**TRAIN_NETS["lenet"].__dict__, "batch": 64}),
                   "BVLC+caffe/examples/mnist/lenet_solver.prototxt"),
    "cifar10_quick": Bench(Spec(**{**TRAIN_NETS["cifar10_quick"].__dict__, "batch": 100}),
                           "BVLC+caffe/examples/cifar10/cifar10_quick_solver.prototxt"),
    "caffenet": Bench(Spec("CaffeNet", "BVLC+caffe/models/bvlc_reference_caffenet/"
                           "train_val.prototxt", "train_val", (3, 227, 227), 1000, 32),
                      "BVLC+caffe/models/bvlc_reference_caffenet/solver.prototxt"),
}

COLUMNS = ("pycaffe", "solver", "loop", "caffe")


@dataclass
class Row:
    net: str
    batch: int
    ms: dict[str, float] = field(default_factory=dict)
    iters: int = 0
    status: list[str] = field(default_factory=list)


def solver_file(bench: Bench, prototxt: Path, workdir: Path, *, chroot: bool = False) -> Path:
    """The published solver on the derived net: no test nets, snapshots or display, CPU.
    With `chroot`, the paths in it are as real Caffe sees them inside its chroot."""
    where = _inside if chroot else str
    param = caffe_pb2.SolverParameter()
    text_format.Merge((MODELS / bench.solver).read_text(), param)
    for name in ("net", "test_iter", "test_interval", "test_net", "snapshot", "display",
                 "solver_mode", "test_initialization"):
        param.ClearField(name)
    param.net = where(prototxt)
    param.max_iter = 1_000_000
    param.test_initialization = False
    param.snapshot_after_train = False
    param.snapshot_prefix = where(workdir / "unused")
    path = workdir / f"solver-{prototxt.stem}{'-chroot' if chroot else ''}.prototxt"
    path.write_text(text_format.MessageToString(param))
    return path


def pycaffe_step(solver_path: Path, weights: Path, arrays: dict[str, np.ndarray]
                 ) -> Callable[[], None]:
    solver = pycaffe.get_solver(str(solver_path))
    solver.net.copy_from(str(weights))
    for name, value in arrays.items():
        solver.net.blobs[name].data[...] = value.reshape(solver.net.blobs[name].data.shape)
    return lambda: solver.step(1)


def solver_step(solver_path: Path, weights: Path, arrays: dict[str, np.ndarray]
                ) -> Callable[[], None]:
    batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
    solver = caffe_fx.Solver(str(solver_path), weights=str(weights), inputs=lambda it: batch)
    return lambda: solver.step(1)


def loop_step(solver_path: Path, prototxt: Path, weights: Path,
              arrays: dict[str, np.ndarray]) -> Callable[[], None]:
    from caffe_fx.optim import from_solver
    gm = caffe_fx.compile(prototxt, weights, phase="train")
    opt, sched = from_solver(str(solver_path), gm)
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        gm(**inputs)["loss"].backward()
        opt.step()
        sched.step()

    return one


_CAFFE_SCRIPT = """
import json, sys, time
import numpy as np
import caffe
solver_path, weights, inputs, warmup, iters, out = sys.argv[1:]
caffe.set_mode_cpu()
solver = caffe.get_solver(solver_path)
solver.net.copy_from(weights)
with np.load(inputs) as z:
    for k in z.files:
        solver.net.blobs[k].data[...] = z[k].reshape(solver.net.blobs[k].data.shape)
for _ in range(int(warmup)):
    solver.step(1)
times = []
for _ in range(int(iters)):
    t0 = time.perf_counter()
    solver.step(1)
    times.append(time.perf_counter() - t0)
with open(out, "w") as f:
    json.dump(times, f)
# pycaffe 1.0's teardown can abort ("double free or corruption") after a solver ran:
# the times are written, leave without it.
import os
os._exit(0)
"""


def _inside(path: Path) -> str:
    """A path under the chroot as real Caffe sees it from inside."""
    return "/" + Path(path).relative_to(CAFFE_ROOT).as_posix()


def caffe_step_ms(solver_path: Path, weights: Path, in_path: Path, iters: int,
                  workdir: Path) -> float:
    """Median ms of real Caffe's `solver.step(1)`, pycaffe in the chroot (1 warm-up)."""
    inside = _inside
    script = workdir / "caffe_step.py"
    script.write_text(_CAFFE_SCRIPT)
    out = workdir / "caffe_step.json"
    out.unlink(missing_ok=True)
    run_in_chroot(CAFFE_ROOT, inside(script),
                  [inside(solver_path), inside(weights), inside(in_path), "1", str(iters),
                   inside(out)])
    times = json.loads(out.read_text())
    return float(np.median(times)) * 1000.0


def bench_net(key: str, a: argparse.Namespace, workdir: Path) -> Row:
    bench = NETS[key]
    spec = bench.net if not a.batch else Spec(**{**bench.net.__dict__, "batch": a.batch})
    row = Row(spec.title, spec.batch)
    print(f"{spec.title}: {MODELS / bench.solver} (batch {spec.batch})", flush=True)
    try:
        prototxt, weights, in_path = prepare(key, spec, spec.batch, workdir)
        solver_path = solver_file(bench, prototxt, workdir)
    except Exception as e:  # noqa: BLE001  (report and carry on with the next net)
        row.status.append(f"no weights: {first_line(e)}")
        return row
    with np.load(in_path) as z:
        arrays = {k: z[k] for k in z.files}
    makers: dict[str, Callable[[], Callable[[], None]]] = {
        "loop": lambda: loop_step(solver_path, prototxt, weights, arrays),
        "solver": lambda: solver_step(solver_path, weights, arrays),
        "pycaffe": lambda: pycaffe_step(solver_path, weights, arrays),
    }
    steps = {}
    for column, make in makers.items():
        try:
            steps[column] = make()
        except Exception as e:  # noqa: BLE001
            row.status.append(f"{column} failed: {first_line(e)}")
    caffe = None
    if not a.no_caffe:
        caffe_solver = solver_file(bench, prototxt, workdir, chroot=True)
        caffe = lambda n: caffe_step_ms(caffe_solver, weights, in_path, n, workdir)  # noqa: E731
    ms, row.iters = time_rounds(steps, caffe, a, row.status)
    steps.clear()
    row.ms.update(ms)
    print("  " + format_row(row), flush=True)
    return row


def ratio(caffe: float | None, ours: float | None) -> str:
    if caffe is None or ours is None:
        return "-"
    r = caffe / ours
    return f"{r:.2f}x {'✓' if r >= TARGET else '✗'}"


HEADER = ("| net | batch | pycaffe solver (ms) | caffe_fx.Solver (ms) | torch loop (ms) | "
          "Caffe (ms) | Caffe / pycaffe | Caffe / Solver | Caffe / loop | iters | notes |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def format_row(r: Row) -> str:
    ms = {c: r.ms.get(c) for c in COLUMNS}
    caffe = ms["caffe"]
    return (f"| {r.net} | {r.batch} | {fmt(ms['pycaffe'], '.1f')} | "
            f"{fmt(ms['solver'], '.1f')} | {fmt(ms['loop'], '.1f')} | {fmt(caffe, '.1f')} | "
            f"{ratio(caffe, ms['pycaffe'])} | {ratio(caffe, ms['solver'])} | "
            f"{ratio(caffe, ms['loop'])} | {r.iters} | {'; '.join(r.status)} |")


def markdown(rows: list[Row], load: tuple[float, float], argv: list[str],
             rounds: int) -> str:
    when = datetime.date.today().isoformat()
    under = (f" Taken under load (1-minute load average {load[0]:.1f} / {load[1]:.1f} on "
             f"{os.cpu_count()} cores): absolute times are inflated." if busy(load) else "")
    return "\n".join([
        f"Solver iteration (`solver.step(1)`: forward, backward, update) on CPU, {when}, "
        f"{cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__.split('+')[0]} "
        f"({torch.get_num_threads()} threads), Caffe 1.0 with OpenBLAS; regenerate with "
        f"`python benchmarks/bench_solver.py {' '.join(argv)}`. Median ms per iteration; "
        f"target: Caffe / ours >= {TARGET:.0f}x; each cell the median of {rounds} rounds "
        f"(caffe_fx's steps, then Caffe's, in turn).{under}",
        "",
        HEADER,
        *(format_row(r) for r in rows),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default=",".join(NETS),
                    help=f"comma-separated, from: {', '.join(NETS)}")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size for every net (default: 64, 100, 32)")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations (at most)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations before timing")
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds of timed torch-loop iterations per net (>= 3 iterations)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads (default: all cores, as Caffe's OpenBLAS)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="cache (default: a folder under the Caffe chroot's /tmp, which "
                         "real Caffe must see)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: LeNet and CIFAR-10 quick at batch 4, 3 iterations")
    ap.add_argument("--markdown", action="store_true", help="print the README's table")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "SOLVER.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--no-caffe", action="store_true", help="skip Caffe's timings")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of caffe_fx's steps then Caffe's; each cell is the median "
                         "of its column's round medians (default 3)")
    a = ap.parse_args()
    if a.quick:
        if a.nets == ap.get_default("nets"):
            a.nets = "lenet,cifar10_quick"
        a.batch = a.batch or 4
        a.iters, a.warmup, a.no_write, a.rounds = 3, 1, True, 1
    nets = csv_list(a.nets)
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        ap.error(f"unknown net(s) {', '.join(unknown)}; allowed: {', '.join(NETS)}")
    default = CAFFE_ROOT / "tmp" / "caffe_fx_bench_solver"
    workdir = (a.workdir or (default if CAFFE_ROOT.is_dir() else
                             Path(tempfile.gettempdir()) / "caffe_fx_bench_solver")).resolve()
    if workdir.is_relative_to(ROOT):
        ap.error(f"--workdir {workdir} is inside the repository; use a folder outside it")
    if not a.no_caffe and not workdir.is_relative_to(CAFFE_ROOT):
        ap.error(f"--workdir {workdir} must be under {CAFFE_ROOT} for real Caffe to see it "
                 "(or pass --no-caffe)")
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    rows = [bench_net(key, a, workdir) for key in nets]
    load = (load_start, os.getloadavg()[0])
    text = "\n".join([
        "# Solver-iteration benchmark: caffe_fx vs Caffe 1.0 (CPU, forward + backward + update)",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; caffe_fx commit "
        f"{commit()}; {wait_policy()}",
        "- see the docstring of benchmarks/bench_solver.py for what each column runs",
        "",
        markdown(rows, load, sys.argv[1:], a.rounds),
        "",
    ])
    print()
    print(text)
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if not a.no_write:
        a.out.write_text(text)
        print(f"wrote {a.out}")
    if a.markdown:
        print(markdown(rows, load, sys.argv[1:], a.rounds))


if __name__ == "__main__":
    main()
