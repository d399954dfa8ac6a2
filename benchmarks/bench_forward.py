"""Forward-time benchmark: caffe_fx's compiled nets against real Caffe 1.0, on the CPU.

    python benchmarks/bench_forward.py [--nets alexnet,googlenet,resnet50,vgg16]
        [--batches 1,8] [--iters 10] [--budget 15] [--threads N] [--workdir DIR] [--inductor]

For every net and batch size: the wall time of caffe_fx.compile() (prototxt + caffemodel
to GraphModule), the median forward time of the compiled net (torch.no_grad, after
warm-up), and Caffe's own forward time measured by `caffe-oracle time` on the same
weights and input in the same run.  Prints a Markdown table and writes it, with the
machine it ran on, to benchmarks/RESULTS.md.  A script, not a test: timing never lives
in tests.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# libgomp's default (spin-waiting) threads collapse when the cores are shared: measured
# 4-5x slower forwards with 2 threads on a busy 2-core machine.  Must precede `import
# torch`; override by setting OMP_WAIT_POLICY=ACTIVE in the environment.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import MODELS, ROOT, cpu_model, csv_list, first_line, fmt, oracle  # noqa: E402

sys.path.insert(0, str(ROOT))

import caffe_fx  # noqa: E402
from caffe_fx.errors import UnsupportedLayerError  # noqa: E402

NETS = {
    "alexnet": ("AlexNet", "BVLC+caffe/models/bvlc_alexnet/deploy.prototxt"),
    "googlenet": ("GoogLeNet", "BVLC+caffe/models/bvlc_googlenet/deploy.prototxt"),
    "resnet50": ("ResNet-50", "KaimingHe+deep-residual-networks/prototxt/ResNet-50-deploy.prototxt"),
    "vgg16": ("VGG16", "davidgengenbach+vgg-caffe/model/VGG_ILSVRC_16_layers_deploy.prototxt"),
}
TARGET = 1.5  # caffe_time / our_time we aim for
LOAD_WARNING = (" (other processes were busy: absolute times are inflated; both columns "
                "ran interleaved, so the ratio is the more meaningful number)")


@dataclass
class Row:
    net: str
    batch: int
    compile_s: float | None = None
    ours_ms: float | None = None
    inductor_ms: float | None = None  # --inductor: torch.compile(gm), inductor + freezing
    inductor_compile_s: float | None = None
    caffe_ms: float | None = None
    iters: int = 0
    status: list[str] = field(default_factory=list)




def prepare_net(key: str, prototxt: Path, workdir: Path) -> tuple[Path, dict]:
    """A caffemodel of well-scaled random weights (`--randomize 7`) and the net's meta
    (inputs, blob shapes), made once by real Caffe and cached in `workdir`."""
    digest = hashlib.sha256(prototxt.read_bytes()).hexdigest()[:10]
    weights = workdir / f"{key}-{digest}.caffemodel"
    meta_path = workdir / f"{key}-{digest}.json"
    if not (weights.exists() and meta_path.exists()):
        print(f"  making {weights.name} with caffe-oracle --randomize 7 ...", flush=True)
        record = workdir / f"{key}-{digest}.record.npz"
        partial = workdir / f"{key}-{digest}.partial.caffemodel"
        try:
            oracle("forward", str(prototxt), "--randomize", "7", "--save-weights",
                   str(partial), "--out", str(record))
            with np.load(record) as z:
                meta = json.loads(str(z["meta"]))
        finally:
            record.unlink(missing_ok=True)  # every blob and param: large, not needed
        meta_path.write_text(json.dumps({"inputs": meta["inputs"], "blobs": meta["blobs"]}))
        partial.replace(weights)
    return weights, json.loads(meta_path.read_text())


def make_inputs(key: str, meta: dict, batch: int, workdir: Path) -> tuple[Path, dict]:
    r = np.random.RandomState(batch)
    arrays = {name: r.randn(batch, *meta["blobs"][name][1:]).astype(np.float32)
              for name in meta["inputs"]}
    path = workdir / f"{key}-b{batch}.npz"
    np.savez(path, **arrays)
    return path, arrays


def time_ours(gm: torch.fx.GraphModule, inputs: dict[str, torch.Tensor], warmup: int,
              iters: int, budget: float) -> tuple[float, int]:
    """Median ms per forward; the count is cut so that the timed runs take ~`budget` s."""
    with torch.no_grad():
        t0 = time.perf_counter()
        for _ in range(max(warmup, 1)):
            gm(**inputs)
        per_run = (time.perf_counter() - t0) / max(warmup, 1)
        n = max(3, min(iters, int(budget / max(per_run, 1e-9))))
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            gm(**inputs)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0, n


def time_caffe(prototxt: Path, weights: Path, inputs: Path, iters: int) -> float:
    out = oracle("time", str(prototxt), "--weights", str(weights), "--inputs", str(inputs),
                 "--iters", str(iters))
    m = re.search(r"caffe forward: ([0-9.]+) ms", out)
    if not m:
        raise RuntimeError(f"caffe-oracle time printed no timing: {out[-500:]!r}")
    return float(m.group(1))


def warm_up_compile() -> float:
    """The first compile in a process imports torch._dynamo (meta kernels of some ops
    are Python refs); done once here so that the compile column is per net."""
    t0 = time.perf_counter()
    caffe_fx.compile('input: "data" input_shape { dim: 1 dim: 1 dim: 2 dim: 2 }\n'
                     'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    return time.perf_counter() - t0



def bench_net(key: str, batches: list[int], a: argparse.Namespace, workdir: Path) -> list[Row]:
    title, rel = NETS[key]
    prototxt = MODELS / rel
    rows = [Row(title, b) for b in batches]
    print(f"{title}: {prototxt}", flush=True)
    try:
        weights, meta = prepare_net(key, prototxt, workdir)
    except Exception as e:  # noqa: BLE001  (report and carry on with the next net)
        for row in rows:
            row.status.append(f"no weights: {first_line(e)}")
        return rows
    for row in rows:
        in_path, arrays = make_inputs(key, meta, row.batch, workdir)
        iters = a.iters
        try:
            t0 = time.perf_counter()
            gm = caffe_fx.compile(prototxt, weights,
                                  input_shapes={k: v.shape for k, v in arrays.items()})
            row.compile_s = time.perf_counter() - t0
            inputs = {k: torch.from_numpy(v) for k, v in arrays.items()}
            row.ours_ms, iters = time_ours(gm, inputs, a.warmup, a.iters, a.budget)
            if a.inductor:
                import torch._inductor.config as inductor_config
                inductor_config.freezing = True  # constant-fold weights, prepack for oneDNN
                t0 = time.perf_counter()
                compiled = torch.compile(gm)
                with torch.no_grad():
                    compiled(**inputs)
                row.inductor_compile_s = time.perf_counter() - t0
                row.inductor_ms, _ = time_ours(compiled, inputs, a.warmup, iters, 1e9)
                del compiled
            del gm
        except UnsupportedLayerError as e:
            row.status.append("unsupported: " + ", ".join(sorted({t for _, t in e.layers})))
        except Exception as e:  # noqa: BLE001
            row.status.append(f"failed: {first_line(e)}")
        row.iters = iters
        if not a.no_caffe:
            try:
                row.caffe_ms = time_caffe(prototxt, weights, in_path, iters)
            except Exception as e:  # noqa: BLE001
                row.status.append(f"caffe failed: {first_line(e)}")
        print("  " + format_row(row, a.inductor), flush=True)
    return rows



def header(inductor: bool) -> str:
    extra = (("torch.compile (s) | caffe_fx + torch.compile (ms) | Caffe / that | ",
              "---:|---:|---:|") if inductor else ("", ""))
    return (f"| net | batch | compile (s) | caffe_fx (ms) | Caffe (ms) | Caffe / caffe_fx | "
            f"{extra[0]}iters | notes |\n|---|---:|---:|---:|---:|---:|{extra[1]}---:|---|")


def ratio(caffe_ms: float | None, ours_ms: float | None) -> str:
    if caffe_ms is None or ours_ms is None:
        return "-"
    speed = caffe_ms / ours_ms
    return f"{speed:.2f}x {'✓' if speed >= TARGET else '✗'}"


def format_row(r: Row, inductor: bool = False) -> str:
    extra = (f"{fmt(r.inductor_compile_s, '.0f')} | {fmt(r.inductor_ms, '.1f')} | "
             f"{ratio(r.caffe_ms, r.inductor_ms)} | " if inductor else "")
    return (f"| {r.net} | {r.batch} | {fmt(r.compile_s, '.2f')} | {fmt(r.ours_ms, '.1f')} "
            f"| {fmt(r.caffe_ms, '.1f')} | {ratio(r.caffe_ms, r.ours_ms)} | {extra}"
            f"{r.iters} | {'; '.join(r.status)} |")



def report(rows: list[Row], a: argparse.Namespace, first_compile_s: float,
           load: tuple[float, float]) -> str:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# Forward-time benchmark: caffe_fx vs Caffe 1.0 (CPU)",
        "",
        f"- date: {when}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, "
        f"{platform.system()} {platform.release()}",
        f"- caffe_fx {caffe_fx.__version__}, torch {torch.__version__}, "
        f"torch.get_num_threads() = {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, float32, torch.no_grad",
        "- Caffe: BVLC Caffe 1.0 CPU build (Debian 11, OpenBLAS) via `caffe-oracle time`",
        f"- caffe_fx: median of `iters` runs after {a.warmup} warm-up run(s); Caffe: mean "
        "of `iters` runs after 1 warm-up run",
        f"- compile: wall time of caffe_fx.compile(prototxt, caffemodel), after a warm-up "
        f"compile that paid the one-time imports ({first_compile_s:.1f} s)",
        f"- load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} "
        f"on {os.cpu_count()} cores{LOAD_WARNING if max(load) > 1.5 * os.cpu_count() else ''}",
        f"- weights: random (`caffe-oracle forward --randomize 7`); target: Caffe / caffe_fx "
        f">= {TARGET}x (✓ met, ✗ not met)",
        f"- command: `python benchmarks/bench_forward.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        header(a.inductor),
        *(format_row(r, a.inductor) for r in rows),
        "",
    ]
    return "\n".join(lines)



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default=",".join(NETS),
                    help=f"comma-separated, from: {', '.join(NETS)}")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--iters", type=int, default=10,
                    help="timed forwards per measurement (at most; see --budget)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed forwards before timing")
    ap.add_argument("--budget", type=float, default=15.0,
                    help="seconds of timed caffe_fx forwards per row: fewer iters (>= 3) "
                         "for slow rows; the same iters are given to Caffe")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="cache for caffemodels and inputs (default: "
                         "$TMPDIR/caffe_fx_bench); never inside the repo")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md",
                    help="where to write the table")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--no-caffe", action="store_true", help="skip Caffe's timings")
    ap.add_argument("--inductor", action="store_true",
                    help="also time torch.compile(gm) (inductor, freezing on; its one-time "
                         "compile takes about a minute per net and batch on 2 cores)")
    a = ap.parse_args()

    nets = csv_list(a.nets)
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        ap.error(f"unknown net(s) {', '.join(unknown)}; allowed: {', '.join(NETS)}")
    batches = [int(b) for b in csv_list(a.batches)]
    workdir = (a.workdir or Path(tempfile.gettempdir()) / "caffe_fx_bench").resolve()
    if workdir.is_relative_to(ROOT):
        ap.error(f"--workdir {workdir} is inside the repository; use a folder outside it")
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)

    rows: list[Row] = []
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    first_compile_s = warm_up_compile()
    for key in nets:
        rows += bench_net(key, batches, a, workdir)
    text = report(rows, a, first_compile_s, (load_start, os.getloadavg()[0]))
    print()
    print(text)
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if not a.no_write:
        a.out.write_text(text)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
