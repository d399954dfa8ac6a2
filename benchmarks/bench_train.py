"""Training-step benchmark: forward + backward + SGD update on the CPU, caffe_fx against
Caffe 1.0.

    python benchmarks/bench_train.py [--nets lenet,cifar10_quick,caffenet]
        [--batch N] [--iters 10] [--warmup 2] [--budget 20] [--threads N] [--workdir DIR]
        [--rounds 3] [--quick] [--markdown] [--out benchmarks/TRAIN.md | --no-write]
        [--no-caffe]

For every net, one training step (forward, backward from the loss, then Caffe's SGD
update with momentum and weight decay) timed three ways in the same run, on the same
derived prototxt, solver, weights and input batch:

1. the pycaffe facade: `solver = caffe_fx.pycaffe.SGDSolver(S)`, `solver.net.copy_from(W)`,
   the inputs written into `solver.net.blobs`, then `solver.step(1)`;
2. the plain GraphModule: `gm = caffe_fx.compile(P, W, phase="train")`,
   `opt, lr = caffe_fx.optim.from_solver(S, gm)`, then per step `p.grad = None` for every
   parameter (zero_grad), `gm(**inputs)["loss"].backward()`, `opt.step()`, `lr.step()`;
3. real Caffe: pycaffe's `solver = caffe.get_solver(S)`, `solver.net.copy_from(W)`, the
   inputs written into its blobs, then `solver.step(1)`, timed step by step in the
   oracle's chroot (bench_solver.py's caffe_step_ms; the files are linked into the
   chroot's /tmp/caffe_fx_bench_train).  Caffe's forward + backward alone (`caffe-oracle
   time --backward`) is shown beside it.

The facade's and the GraphModule's steps run interleaved (one of each in turn), Caffe's
after them in its own process; `--rounds` (3) repeats that, and each cell is the median
of its column's round medians, so that Caffe's own step, which moves by 10-50% from one
process to the next on a shared VM, is not taken from one process alone.

Prints a Markdown table (median ms per step and the ratios facade / GM, Caffe / GM,
Caffe / facade) and writes it, with the machine it ran on, to benchmarks/TRAIN.md;
`--markdown` prints only the table as the README shows it.  A script, not a test: timing
never lives in tests.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import re
import shutil
import statistics
import subprocess
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
from _common import (MODELS, ROOT, cpu_model, csv_list, first_line, fmt, oracle,  # noqa: E402
                     wait_policy)
from google.protobuf import text_format  # noqa: E402

import caffe_fx.optim  # noqa: E402
from caffe_fx import pycaffe  # noqa: E402
from caffe_fx.proto import caffe_pb2  # noqa: E402


@dataclass(frozen=True)
class Spec:
    title: str
    prototxt: str  # under MODELS
    kind: str  # "train_val": its TRAIN data layer becomes an Input; "deploy": + a loss
    chw: tuple[int, int, int]  # the data blob's C, H, W (crop size for the ImageNet nets)
    classes: int
    batch: int


# The targets of issues #9 and #13: LeNet b64, CIFAR-10 quick b100, CaffeNet b32.
NETS = {
    "lenet": Spec("LeNet", "BVLC+caffe/examples/mnist/lenet_train_test.prototxt",
                  "train_val", (1, 28, 28), 10, 64),
    "cifar10_quick": Spec("CIFAR-10 quick",
                          "BVLC+caffe/examples/cifar10/cifar10_quick_train_test.prototxt",
                          "train_val", (3, 32, 32), 10, 100),
    "caffenet": Spec("CaffeNet", "BVLC+caffe/models/bvlc_reference_caffenet/train_val.prototxt",
                     "train_val", (3, 227, 227), 1000, 32),
    "alexnet": Spec("AlexNet", "BVLC+caffe/models/bvlc_alexnet/train_val.prototxt",
                    "train_val", (3, 227, 227), 1000, 32),
    "resnet50": Spec("ResNet-50",
                     "KaimingHe+deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
                     "deploy", (3, 224, 224), 1000, 16),
}
DEFAULT_NETS = ("lenet", "cifar10_quick", "caffenet")
# One SGD solver for every net (the BVLC solvers' momentum and LeNet's/CaffeNet's decay;
# a rate small enough that random weights stay finite over the timed steps).
SOLVER = ('base_lr: 0.001\nmomentum: 0.9\nweight_decay: 0.0005\nlr_policy: "fixed"\n'
          'max_iter: 100000000\ndisplay: 0\nsnapshot_after_train: false\n'
          'solver_mode: CPU\ntype: "SGD"\n')
SOURCE_TYPES = {"Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData"}
FACADE_TARGET = 1.2  # facade / GM at most
CAFFE_TARGET = 2.0  # Caffe / ours at least (issues #9, #13: 2x Caffe on CPU)
LOAD_WARNING = (" (other processes were busy: absolute times are inflated; the columns "
                "ran one after another, so compare ratios with care)")


@dataclass
class Row:
    net: str
    batch: int
    facade_ms: float | None = None
    gm_ms: float | None = None
    caffe_ms: float | None = None
    caffe_fb_ms: float | None = None  # Caffe's forward + backward alone
    iters: int = 0
    status: list[str] = field(default_factory=list)


# -- the nets ------------------------------------------------------------------------


def _input_layer(batch: int, spec: Spec, tops: list[str]) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name="data", type="Input")
    layer.top.extend(tops)
    layer.input_param.shape.add().dim.extend([batch, *spec.chw])
    layer.input_param.shape.add().dim.extend([batch])
    return layer


def train_net(spec: Spec, batch: int) -> caffe_pb2.NetParameter:
    """The net of one TRAIN iteration, with Input layers where the data came from: a
    train_val net keeps its TRAIN layers (the data layer's tops, data and label, become an
    Input); a deploy net gets a label Input and a SoftmaxWithLoss on its last Softmax's
    bottom, and its BatchNorm layers lose `use_global_stats: true`, so that they
    normalise with the batch's statistics as Caffe's BatchNorm does in TRAIN."""
    src = caffe_pb2.NetParameter()
    text_format.Merge((MODELS / spec.prototxt).read_text(), src)
    net = caffe_pb2.NetParameter(name=src.name + "-train")
    if spec.kind == "train_val":
        for layer in src.layer:
            phases = {r.phase for r in layer.include if r.HasField("phase")}
            if phases and caffe_pb2.TRAIN not in phases:
                continue  # TEST-only: the test data layer, Accuracy
            if layer.type in SOURCE_TYPES:
                net.layer.append(_input_layer(batch, spec, list(layer.top)))
            else:
                net.layer.add().CopyFrom(layer)
        return net
    assert not src.layers, "legacy V1 deploy nets are not handled here"
    data = list(src.input) or ["data"]
    net.layer.append(_input_layer(batch, spec, [data[0], "label"]))
    softmax = max(i for i, layer in enumerate(src.layer) if layer.type == "Softmax")
    for i, layer in enumerate(src.layer):
        if layer.type == "Input":
            continue
        if i == softmax:
            loss = net.layer.add(name="loss", type="SoftmaxWithLoss")
            loss.bottom.extend([layer.bottom[0], "label"])
            loss.top.append("loss")
            continue
        new = net.layer.add()
        new.CopyFrom(layer)
        if new.type == "BatchNorm":
            new.batch_norm_param.ClearField("use_global_stats")
    return net



def prepare(key: str, spec: Spec, batch: int, workdir: Path) -> tuple[Path, Path, Path]:
    """The derived prototxt, a caffemodel of well-scaled random weights made by real Caffe
    (`--randomize 7`, on the batch-1 net: weights do not depend on the batch; cached by a
    hash of the net) and IN.npz (data ~ N(0, 1), labels uniform over the classes)."""
    text = text_format.MessageToString(train_net(spec, batch))
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    prototxt = workdir / f"train-{key}-b{batch}-{digest}.prototxt"
    prototxt.write_text(text)
    one = text_format.MessageToString(train_net(spec, 1))
    wdigest = hashlib.sha256(one.encode()).hexdigest()[:10]
    weights = workdir / f"train-{key}-{wdigest}.caffemodel"
    if not weights.exists():
        print(f"  making {weights.name} with caffe-oracle --randomize 7 ...", flush=True)
        net1 = workdir / f"train-{key}-b1-{wdigest}.prototxt"
        net1.write_text(one)
        record = workdir / f"train-{key}-{wdigest}.record.npz"
        partial = workdir / f"train-{key}-{wdigest}.partial.caffemodel"
        try:
            oracle("forward", str(net1), "--phase", "train", "--randomize", "7",
                   "--save-weights", str(partial), "--out", str(record))
        finally:
            record.unlink(missing_ok=True)
        partial.replace(weights)
    r = np.random.RandomState(batch)
    inputs = workdir / f"train-{key}-b{batch}.npz"
    np.savez(inputs, data=r.randn(batch, *spec.chw).astype(np.float32),
             label=r.randint(0, spec.classes, size=batch).astype(np.float32))
    return prototxt, weights, inputs


def solver_for(prototxt: Path) -> Path:
    """SOLVER over the derived prototxt, written beside it."""
    solver = prototxt.with_suffix(".solver.prototxt")
    solver.write_text(f'net: "{prototxt}"\n' + SOLVER)
    return solver


# -- timing --------------------------------------------------------------------------


def time_it(one: Callable[[], None], warmup: int, iters: int, budget: float
            ) -> tuple[float, int]:
    """Median ms per call after `warmup` calls; the count is cut (to no fewer than 3) so
    that the timed calls take about `budget` seconds."""
    t0 = time.perf_counter()
    for _ in range(max(warmup, 1)):
        one()
    per_run = (time.perf_counter() - t0) / max(warmup, 1)
    n = max(3, min(iters, int(budget / max(per_run, 1e-9))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        one()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0, n


def time_interleaved(steps: dict[str, Callable[[], None]], warmup: int, iters: int,
                     budget: float) -> tuple[dict[str, float], int]:
    """Median ms per call of each step, the steps called in turn (`warmup` rounds
    first); the rounds are cut (to no fewer than 3) so that the first step's timed calls
    take about `budget` seconds."""
    first = next(iter(steps))
    t0 = time.perf_counter()
    for _ in range(max(warmup, 1)):
        for name, one in steps.items():
            if name == first:
                t0 = time.perf_counter()
            one()
            if name == first:
                per_run = time.perf_counter() - t0
    n = max(3, min(iters, int(budget / max(per_run, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(n):
        for name, one in steps.items():
            t0 = time.perf_counter()
            one()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1000.0 for name, t in times.items()}, n


def time_rounds(steps: dict[str, Callable[[], None]], caffe: Callable[[int], float] | None,
                a: argparse.Namespace, status: list[str]) -> tuple[dict[str, float], int]:
    """`a.rounds` rounds of the caffe_fx steps (time_interleaved), then Caffe's process
    (`caffe(iters)`, its median ms; None: no Caffe), in turn: each column's median over
    its rounds ("caffe" for Caffe's) and the timed count.  A column that fails is
    reported in `status` and left out of the later rounds."""
    runs: dict[str, list[float]] = {}
    iters = a.iters
    for r in range(a.rounds):
        if steps:  # interleaved, so that a change in the machine's load hits each alike
            try:
                ms, iters = time_interleaved(steps, a.warmup if r == 0 else 1, iters,
                                             a.budget)
                for name, value in ms.items():
                    runs.setdefault(name, []).append(value)
            except Exception as e:  # noqa: BLE001
                status.append(f"caffe_fx failed: {first_line(e)}")
                steps = {}
        if caffe is not None:
            try:
                runs.setdefault("caffe", []).append(caffe(iters))
            except Exception as e:  # noqa: BLE001
                status.append(f"caffe failed: {first_line(e)}")
                caffe = None
    return {name: statistics.median(values) for name, values in runs.items()}, iters


def gm_step(prototxt: Path, solver: Path, weights: Path, arrays: dict[str, np.ndarray]
            ) -> Callable[[], None]:
    gm = caffe_fx.compile(prototxt, weights, phase="train")
    opt, lr = caffe_fx.optim.from_solver(solver, gm)
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}
    params = [p for p in gm.parameters() if p.requires_grad]

    def one() -> None:
        for p in params:  # optimizer.zero_grad(set_to_none=True)
            p.grad = None
        out = gm(**inputs)
        out["loss"].backward()
        opt.step()
        lr.step()

    return one


def facade_step(solver: Path, weights: Path, arrays: dict[str, np.ndarray]
                ) -> Callable[[], None]:
    s = pycaffe.SGDSolver(str(solver))
    s.net.copy_from(str(weights))
    for name, value in arrays.items():
        s.net.blobs[name].data[...] = value.reshape(s.net.blobs[name].data.shape)

    def one() -> None:
        s.step(1)

    return one


def time_caffe_fb(prototxt: Path, weights: Path, inputs: Path, iters: int) -> float:
    out = oracle("time", str(prototxt), "--weights", str(weights), "--inputs", str(inputs),
                 "--iters", str(iters), "--phase", "train", "--backward")
    m = re.search(r"median ([0-9.]+) ms", out)
    if not m:
        raise RuntimeError(f"caffe-oracle time printed no timing: {out[-500:]!r}")
    return float(m.group(1))


def time_caffe_step(prototxt: Path, weights: Path, inputs: Path, iters: int) -> float:
    """Median ms of real Caffe's pycaffe `solver.step(1)` on SOLVER (bench_solver.py's
    caffe_step_ms: pycaffe in the oracle's chroot, 1 warm-up step), its files linked into
    a folder under the chroot's /tmp, which real Caffe must see."""
    from bench_solver import CAFFE_ROOT, _inside, caffe_step_ms

    work = CAFFE_ROOT / "tmp" / "caffe_fx_bench_train"
    work.mkdir(parents=True, exist_ok=True)
    seen = []
    for path in (prototxt, weights, inputs):
        there = work / path.name
        if not there.exists() or there.stat().st_size != path.stat().st_size \
                or there.stat().st_mtime < path.stat().st_mtime:
            there.unlink(missing_ok=True)
            try:
                os.link(path, there)
            except OSError:
                shutil.copyfile(path, there)
        seen.append(there)
    solver = work / prototxt.with_suffix(".solver.prototxt").name
    solver.write_text(f'net: "{_inside(seen[0])}"\n' + SOLVER)
    return caffe_step_ms(solver, seen[1], seen[2], iters, work)


def bench_net(key: str, a: argparse.Namespace, workdir: Path) -> Row:
    spec = NETS[key]
    batch = a.batch or spec.batch
    row = Row(spec.title, batch)
    print(f"{spec.title}: {MODELS / spec.prototxt} (batch {batch})", flush=True)
    try:
        prototxt, weights, in_path = prepare(key, spec, batch, workdir)
        solver = solver_for(prototxt)
    except Exception as e:  # noqa: BLE001  (report and carry on with the next net)
        row.status.append(f"no weights: {first_line(e)}")
        return row
    with np.load(in_path) as z:
        arrays = {k: z[k] for k in z.files}
    steps: dict[str, Callable[[], None]] = {}
    try:
        steps["gm"] = gm_step(prototxt, solver, weights, arrays)
    except Exception as e:  # noqa: BLE001
        row.status.append(f"GM failed: {first_line(e)}")
    try:
        steps["facade"] = facade_step(solver, weights, arrays)
    except Exception as e:  # noqa: BLE001
        row.status.append(f"facade failed: {first_line(e)}")
    caffe = None if a.no_caffe else (
        lambda n: time_caffe_step(prototxt, weights, in_path, n))
    ms, iters = time_rounds(steps, caffe, a, row.status)
    steps.clear()
    row.iters = iters
    row.gm_ms, row.facade_ms, row.caffe_ms = ms.get("gm"), ms.get("facade"), ms.get("caffe")
    if row.caffe_ms is not None:
        try:
            row.caffe_fb_ms = time_caffe_fb(prototxt, weights, in_path, iters)
        except Exception as e:  # noqa: BLE001
            row.status.append(f"caffe failed: {first_line(e)}")
    print("  " + format_row(row), flush=True)
    return row


# -- the table -----------------------------------------------------------------------



def ratio(num: float | None, den: float | None, ok: Callable[[float], bool]) -> str:
    if num is None or den is None:
        return "-"
    r = num / den
    return f"{r:.2f}x {'✓' if ok(r) else '✗'}"


HEADER = ("| net | batch | facade (ms) | GraphModule (ms) | Caffe (ms) | facade / GM | "
          "Caffe / GM | Caffe / facade | Caffe fwd+bwd (ms) | iters | notes |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def format_row(r: Row) -> str:
    return (f"| {r.net} | {r.batch} | {fmt(r.facade_ms, '.1f')} | {fmt(r.gm_ms, '.1f')} | "
            f"{fmt(r.caffe_ms, '.1f')} | "
            f"{ratio(r.facade_ms, r.gm_ms, lambda x: x <= FACADE_TARGET)} | "
            f"{ratio(r.caffe_ms, r.gm_ms, lambda x: x >= CAFFE_TARGET)} | "
            f"{ratio(r.caffe_ms, r.facade_ms, lambda x: x >= CAFFE_TARGET)} | "
            f"{fmt(r.caffe_fb_ms, '.1f')} | {r.iters} | {'; '.join(r.status)} |")



def commit() -> str:
    """The caffe_fx commit measured (with "+changes" when the tree differs from it)."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" +changes" if git("status", "--porcelain", "--", "caffe_fx") else "")


def busy(load: tuple[float, float]) -> bool:
    """Whether other processes were loading the machine: the 1-minute load average before
    the run (at the end it counts the benchmark's own threads, ~2 on 2 cores)."""
    return load[0] >= 1.0


def regen_args(argv: list[str]) -> list[str]:
    """The command line without the flags that only say where the output goes."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--out", "--workdir"):
            skip = True
        elif not (arg in ("--markdown", "--no-write") or arg.startswith(("--out=", "--workdir="))):
            out.append(arg)
    return out


def markdown(rows: list[Row], load: tuple[float, float]) -> str:
    """The README's table and the line above it."""
    when = datetime.date.today().isoformat()
    cmd = " ".join(["python benchmarks/bench_train.py", *regen_args(sys.argv[1:])])
    under = (f" Taken under load (1-minute load average {load[0]:.1f} at start, "
             f"{load[1]:.1f} at end, on {os.cpu_count()} cores): absolute times are "
             "inflated." if busy(load) else "")
    return "\n".join([
        f"Training step (forward + backward + SGD update) on CPU, {when}, {cpu_model()} "
        f"({os.cpu_count()} cores), torch {torch.__version__.split('+')[0]} "
        f"({torch.get_num_threads()} threads), Caffe 1.0 with OpenBLAS (all cores); "
        f"regenerate with `{cmd} --markdown` (`benchmarks/TRAIN.md`). "
        "Median ms per step; targets: facade / GM <= "
        f"{FACADE_TARGET}x, Caffe / GM and Caffe / facade >= {CAFFE_TARGET:.0f}x.{under}",
        "",
        HEADER,
        *(format_row(r) for r in rows),
    ])


def report(rows: list[Row], a: argparse.Namespace, load: tuple[float, float]) -> str:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# Training-step benchmark: caffe_fx vs Caffe 1.0 (CPU, forward + backward + SGD "
        "update)",
        "",
        f"- date: {when}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, "
        f"{platform.system()} {platform.release()}",
        f"- caffe_fx {caffe_fx.__version__} (commit {commit()}), torch {torch.__version__}, "
        f"torch.get_num_threads() = {torch.get_num_threads()}, "
        f"{wait_policy()}, float32",
        "- nets: the TRAIN phase of each train_val net with its data layer replaced by an "
        "Input of data and label; ResNet-50's deploy net plus a SoftmaxWithLoss on a label "
        "Input, its BatchNorms without `use_global_stats: true` (batch statistics, as Caffe "
        "runs BatchNorm in TRAIN); Dropout active",
        "- solver S (every net): `type: \"SGD\"`, base_lr 0.001, momentum 0.9, "
        "weight_decay 0.0005, lr_policy fixed",
        "- facade: `caffe_fx.pycaffe.SGDSolver(S)`, `solver.net.copy_from(W)`, "
        "`solver.step(1)`",
        "- GraphModule: `caffe_fx.compile(P, W, phase=\"train\")`, "
        "`caffe_fx.optim.from_solver(S, gm)`; `p.grad = None` for every parameter, "
        "`gm(**inputs)[\"loss\"].backward()`, `opt.step()`, `lr.step()`",
        "- Caffe: BVLC Caffe 1.0 CPU build (Debian 11, OpenBLAS), pycaffe's "
        "`solver.step(1)` in the oracle's chroot, the median of `iters` steps after 1 "
        "warm-up step (bench_solver.py's caffe_step_ms); `Caffe fwd+bwd`: `caffe-oracle "
        "time --backward --phase train` (`net.forward(); net.backward()`, median)",
        f"- caffe_fx: the median of `iters` steps after {a.warmup} warm-up step(s), the "
        "facade's and the GraphModule's steps interleaved; `iters` "
        "is cut (to >= 3) so that the GraphModule's timed steps take about "
        f"{a.budget:g} s",
        f"- rounds: {a.rounds} (caffe_fx's steps, then Caffe's, in turn); each cell is the "
        "median of its column's round medians (`Caffe fwd+bwd`: one run, after them)",
        f"- load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} "
        f"on {os.cpu_count()} cores{LOAD_WARNING if busy(load) else ''}",
        f"- weights: random (`caffe-oracle forward --randomize 7`); targets: facade / GM <= "
        f"{FACADE_TARGET}x, Caffe / GM and Caffe / facade >= {CAFFE_TARGET:.0f}x "
        "(✓ met, ✗ not met)",
        f"- command: `python benchmarks/bench_train.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        HEADER,
        *(format_row(r) for r in rows),
        "",
    ]
    return "\n".join(lines)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default=",".join(DEFAULT_NETS),
                    help=f"comma-separated, from: {', '.join(NETS)} (default: "
                         f"{', '.join(DEFAULT_NETS)})")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size for every net (default: 64 for LeNet, 100 for CIFAR-10 "
                         "quick, 32 for CaffeNet and AlexNet, 16 for ResNet-50)")
    ap.add_argument("--iters", type=int, default=10,
                    help="timed iterations per column (at most; see --budget)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations before timing")
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds of timed GraphModule iterations per net: fewer iters "
                         "(>= 3) for slow nets; the same iters go to the facade and Caffe")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads (default: all cores, as Caffe's OpenBLAS)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="cache for prototxts, caffemodels and inputs (default: "
                         "$TMPDIR/caffe_fx_bench); never inside the repo")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: LeNet and CIFAR-10 quick at batch 4, 3 iterations, "
                         "1 warm-up; prints only")
    ap.add_argument("--markdown", action="store_true",
                    help="print the README's table (and the line above it) at the end")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "TRAIN.md",
                    help="where to write the table with its header")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--no-caffe", action="store_true", help="skip Caffe's timings")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of caffe_fx's steps then Caffe's; each column's cell is "
                         "the median of its rounds' medians (default 3)")
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
    workdir = (a.workdir or Path(tempfile.gettempdir()) / "caffe_fx_bench").resolve()
    if workdir.is_relative_to(ROOT):
        ap.error(f"--workdir {workdir} is inside the repository; use a folder outside it")
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)

    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    rows = [bench_net(key, a, workdir) for key in nets]
    load = (load_start, os.getloadavg()[0])
    text = report(rows, a, load)
    print()
    print(text)
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if not a.no_write:
        a.out.write_text(text)
        print(f"wrote {a.out}")
    if a.markdown:
        print()
        print(markdown(rows, load))


if __name__ == "__main__":
    main()
