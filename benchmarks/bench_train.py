"""Training-iteration benchmark: forward + backward on the CPU, caffe_fx against Caffe 1.0.

    python benchmarks/bench_train.py [--nets lenet,cifar10_quick,alexnet,resnet50]
        [--batch N] [--iters 10] [--warmup 2] [--budget 20] [--threads N] [--workdir DIR]
        [--quick] [--markdown] [--out benchmarks/TRAIN.md | --no-write] [--no-caffe]

For every net, one training-style iteration (forward, then backward from the loss) timed
three ways in the same run, on the same derived prototxt, weights and input batch:

1. the pycaffe facade: `net = caffe_fx.pycaffe.Net(P, caffe.TRAIN, weights=W)`, then
   `net.forward(); net.backward()` (param diffs accumulate, as in pycaffe and `caffe time`);
2. the plain GraphModule: `gm = caffe_fx.compile(P, W, phase="train")`, then per iteration
   `p.grad = None` for every parameter (zero_grad), `out = gm(**inputs)`,
   `out["loss"].backward()`;
3. real Caffe: `caffe-oracle time P --weights W --inputs IN.npz --backward --phase train`.

Prints a Markdown table (median ms per iteration and the ratios facade / GM, Caffe / GM,
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# As in bench_forward.py: libgomp's spin-waiting threads collapse when the cores are
# shared.  Must precede `import torch`; OMP_WAIT_POLICY=ACTIVE in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import MODELS, ROOT, cpu_model, csv_list, first_line, fmt, oracle  # noqa: E402
from google.protobuf import text_format  # noqa: E402

sys.path.insert(0, str(ROOT))

import caffe_fx  # noqa: E402
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


NETS = {
    "lenet": Spec("LeNet", "BVLC+caffe/examples/mnist/lenet_train_test.prototxt",
                  "train_val", (1, 28, 28), 10, 32),
    "cifar10_quick": Spec("CIFAR-10 quick",
                          "BVLC+caffe/examples/cifar10/cifar10_quick_train_test.prototxt",
                          "train_val", (3, 32, 32), 10, 32),
    "alexnet": Spec("AlexNet", "BVLC+caffe/models/bvlc_alexnet/train_val.prototxt",
                    "train_val", (3, 227, 227), 1000, 32),
    "resnet50": Spec("ResNet-50",
                     "KaimingHe+deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
                     "deploy", (3, 224, 224), 1000, 16),
}
SOURCE_TYPES = {"Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData"}
FACADE_TARGET = 1.2  # facade / GM at most
CAFFE_TARGET = 1.0  # Caffe / ours above
LOAD_WARNING = (" (other processes were busy: absolute times are inflated; the columns "
                "ran one after another, so compare ratios with care)")


@dataclass
class Row:
    net: str
    batch: int
    facade_ms: float | None = None
    gm_ms: float | None = None
    caffe_ms: float | None = None
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


def gm_iteration(prototxt: Path, weights: Path, arrays: dict[str, np.ndarray]
                 ) -> Callable[[], None]:
    gm = caffe_fx.compile(prototxt, weights, phase="train")
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}
    params = [p for p in gm.parameters() if p.requires_grad]

    def one() -> None:
        for p in params:  # optimizer.zero_grad(set_to_none=True)
            p.grad = None
        out = gm(**inputs)
        out["loss"].backward()

    return one


def facade_iteration(prototxt: Path, weights: Path, arrays: dict[str, np.ndarray]
                     ) -> Callable[[], None]:
    net = pycaffe.Net(str(prototxt), pycaffe.TRAIN, weights=str(weights))
    for name, value in arrays.items():
        net.blobs[name].data[...] = value.reshape(net.blobs[name].data.shape)

    def one() -> None:
        net.forward()
        net.backward()

    return one


def time_caffe(prototxt: Path, weights: Path, inputs: Path, iters: int) -> float:
    out = oracle("time", str(prototxt), "--weights", str(weights), "--inputs", str(inputs),
                 "--iters", str(iters), "--phase", "train", "--backward")
    m = re.search(r"median ([0-9.]+) ms", out)
    if not m:
        raise RuntimeError(f"caffe-oracle time printed no timing: {out[-500:]!r}")
    return float(m.group(1))



def bench_net(key: str, a: argparse.Namespace, workdir: Path) -> Row:
    spec = NETS[key]
    batch = a.batch or spec.batch
    row = Row(spec.title, batch)
    print(f"{spec.title}: {MODELS / spec.prototxt} (batch {batch})", flush=True)
    try:
        prototxt, weights, in_path = prepare(key, spec, batch, workdir)
    except Exception as e:  # noqa: BLE001  (report and carry on with the next net)
        row.status.append(f"no weights: {first_line(e)}")
        return row
    with np.load(in_path) as z:
        arrays = {k: z[k] for k in z.files}
    iters = a.iters
    try:  # the plain GraphModule first: its time sets the count for the other two
        one = gm_iteration(prototxt, weights, arrays)
        row.gm_ms, iters = time_it(one, a.warmup, a.iters, a.budget)
        del one
    except Exception as e:  # noqa: BLE001
        row.status.append(f"GM failed: {first_line(e)}")
    try:
        one = facade_iteration(prototxt, weights, arrays)
        row.facade_ms, _ = time_it(one, a.warmup, iters, 1e9)
        del one
    except Exception as e:  # noqa: BLE001
        row.status.append(f"facade failed: {first_line(e)}")
    row.iters = iters
    if not a.no_caffe:
        try:
            row.caffe_ms = time_caffe(prototxt, weights, in_path, iters)
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
          "Caffe / GM | Caffe / facade | iters | notes |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def format_row(r: Row) -> str:
    return (f"| {r.net} | {r.batch} | {fmt(r.facade_ms, '.1f')} | {fmt(r.gm_ms, '.1f')} | "
            f"{fmt(r.caffe_ms, '.1f')} | "
            f"{ratio(r.facade_ms, r.gm_ms, lambda x: x <= FACADE_TARGET)} | "
            f"{ratio(r.caffe_ms, r.gm_ms, lambda x: x > CAFFE_TARGET)} | "
            f"{ratio(r.caffe_ms, r.facade_ms, lambda x: x > CAFFE_TARGET)} | "
            f"{r.iters} | {'; '.join(r.status)} |")



def commit() -> str:
    """The caffe_fx commit measured (with "+changes" when the tree differs from it)."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" +changes" if git("status", "--porcelain", "--", "caffe_fx") else "")


def busy(load: tuple[float, float]) -> bool:
    return max(load) >= 1.0


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
        f"Training iteration (forward + backward) on CPU, {when}, {cpu_model()} "
        f"({os.cpu_count()} cores), torch {torch.__version__.split('+')[0]} "
        f"({torch.get_num_threads()} threads), Caffe 1.0 with OpenBLAS (all cores); "
        f"regenerate with `{cmd} --markdown` (`benchmarks/TRAIN.md`). "
        "Median ms per iteration; targets: facade / GM <= "
        f"{FACADE_TARGET}x, Caffe / GM and Caffe / facade > {CAFFE_TARGET:.0f}x.{under}",
        "",
        HEADER,
        *(format_row(r) for r in rows),
    ])


def report(rows: list[Row], a: argparse.Namespace, load: tuple[float, float]) -> str:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# Training-iteration benchmark: caffe_fx vs Caffe 1.0 (CPU, forward + backward)",
        "",
        f"- date: {when}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, "
        f"{platform.system()} {platform.release()}",
        f"- caffe_fx {caffe_fx.__version__} (commit {commit()}), torch {torch.__version__}, "
        f"torch.get_num_threads() = {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, float32",
        "- nets: the TRAIN phase of each train_val net with its data layer replaced by an "
        "Input of data and label; ResNet-50's deploy net plus a SoftmaxWithLoss on a label "
        "Input, its BatchNorms without `use_global_stats: true` (batch statistics, as Caffe "
        "runs BatchNorm in TRAIN); Dropout active",
        "- facade: `caffe_fx.pycaffe.Net(P, TRAIN, weights=W)`, `net.forward(); "
        "net.backward()`",
        "- GraphModule: `caffe_fx.compile(P, W, phase=\"train\")`, `p.grad = None` for "
        "every parameter, `gm(**inputs)[\"loss\"].backward()`",
        "- Caffe: BVLC Caffe 1.0 CPU build (Debian 11, OpenBLAS) via `caffe-oracle time "
        "--backward --phase train`: `net.forward(); net.backward()`",
        f"- all three: the median of `iters` iterations; caffe_fx after {a.warmup} warm-up "
        "iteration(s), Caffe after 1; `iters` is cut (to >= 3) so that the GraphModule's "
        f"timed iterations take about {a.budget:g} s",
        f"- load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} "
        f"on {os.cpu_count()} cores{LOAD_WARNING if busy(load) else ''}",
        f"- weights: random (`caffe-oracle forward --randomize 7`); targets: facade / GM <= "
        f"{FACADE_TARGET}x, Caffe / GM and Caffe / facade > {CAFFE_TARGET:.0f}x "
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
    ap.add_argument("--nets", default=",".join(NETS),
                    help=f"comma-separated, from: {', '.join(NETS)}")
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size for every net (default: 32; 16 for ResNet-50)")
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
    a = ap.parse_args()
    if a.quick:
        if a.nets == ap.get_default("nets"):
            a.nets = "lenet,cifar10_quick"
        a.batch = a.batch or 4
        a.iters, a.warmup, a.no_write = 3, 1, True

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
