"""Forward time and peak memory on the CPU: real Caffe 1.0 against caffe_fx and its peers.

    python benchmarks/bench_forward.py [--nets alexnet,googlenet,...] [--batches 1,8]
        [--rounds 3] [--tools caffe,eager,inductor,onnxruntime,opencv] [--threads 2]

Five tools, each run in a fresh process per net, batch and round, interleaved (the order
of the tools turns every round): Caffe (`caffe-oracle time`), caffe_fx eager (compile()'s
GraphModule), caffe_fx + torch.compile, onnxruntime on caffe_fx's own ONNX export
(`caffe-fx export`) and OpenCV dnn 4.14 (cv2.dnn.readNetFromCaffe on the same prototxt and
caffemodel).  Every process's outputs are checked against Caffe's (`caffe-oracle forward`,
1e-4 of their max magnitude) before its time is believed; all get the same thread count
and CPUs.  Reports the median over rounds of each process's median forward and its peak
RSS over its baseline after imports.  Writes benchmarks/RESULTS.md.  A script, not a test:
timing never lives in tests.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _common import (FORWARD_NETS, MODELS, ORACLE, ROOT, caffe_outputs, cpu_model, csv_list,
                     first_line, fmt, make_inputs, max_rel_diff, prepare_net, wait_policy)

TOOLS = {"caffe": "Caffe", "eager": "caffe_fx eager", "inductor": "caffe_fx + torch.compile",
         "onnxruntime": "onnxruntime", "opencv": "OpenCV dnn"}
PEERS = ("onnxruntime", "opencv")
# The caffe_fx workers' libgomp wait where the caller's environment sets none.
CAFFE_FX_SPIN = "GOMP_SPINCOUNT=20000 from `import caffe_fx` before torch"
OPENCV_VERSION = "4.14"  # the Caffe importer users pick today (issue #13)
TOL = 1e-4  # max |tool - Caffe| / max |Caffe|, per output
WORKER = Path(__file__).with_name("_forward_worker.py")
TINY_NET = ('input: "data" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1\n'
            'layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" }\n')


@dataclass
class Run:
    """One tool's process for one row in one round."""
    ms: float | None = None  # median forward; None when failed or not believed
    peak_mb: float | None = None  # peak RSS over the baseline after imports
    load_s: float | None = None
    first_s: float | None = None  # the first forward (torch.compile compiles there)
    note: str = ""


@dataclass
class Row:
    key: str
    title: str
    batch: int
    prototxt: Path
    weights: Path | None = None
    inputs: Path | None = None
    onnx: Path | None = None
    onnx_tree: str = ""  # the committed caffe_fx/ tree the .onnx was exported at
    ref: dict[str, np.ndarray] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def median(self, tool: str, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs.get(tool, []) if r.ms is not None]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None


class Launcher:
    """Starts every tool's process with the same threads, CPUs and environment, and reads
    its peak RSS (ru_maxrss from wait4: the process and any children it waited for)."""

    def __init__(self, threads: int, timeout: float):
        self.cpus = sorted(os.sched_getaffinity(0))[:threads]
        self.timeout = timeout
        self.env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                        OPENBLAS_NUM_THREADS=str(threads), TORCHINDUCTOR_COMPILE_THREADS="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                 os.environ.get("PYTHONPATH")])))
        # The caffe_fx workers import caffe_fx before torch, so libgomp waits as caffe_fx
        # sets it up for users (GOMP_SPINCOUNT=20000, caffe_fx/_threads.py); an
        # OMP_WAIT_POLICY or GOMP_SPINCOUNT in the caller's environment wins.
        self.loads: list[float] = []  # the 1-min load average before each process
        self.caffe_base: float | None = None  # Caffe's RSS after imports (MB)

    def __call__(self, cmd: list[str]) -> tuple[int, str, str, float]:
        """(exit status, stdout, stderr's end, peak RSS in MB)."""
        self.loads.append(os.getloadavg()[0])
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                    env=self.env, cwd=ROOT,
                                    preexec_fn=lambda: os.sched_setaffinity(0, self.cpus))
            timer = threading.Timer(self.timeout, proc.kill)
            timer.start()
            try:
                out = proc.stdout.read()
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            err.seek(0)
            return proc.returncode, out, err.read()[-1500:], usage.ru_maxrss / 1024.0


def oracle_cmd(*args: str) -> list[str]:
    return [str(ORACLE), *args]


def caffe_run(launch: Launcher, row: Row, iters: int, baseline_mb: float) -> Run:
    rc, out, err, peak = launch(oracle_cmd("time", str(row.prototxt), "--weights",
                                           str(row.weights), "--inputs", str(row.inputs),
                                           "--iters", str(iters)))
    m = re.search(r"caffe forward: [0-9.]+ ms .*median ([0-9.]+) ms", out)
    if rc != 0 or not m:
        last = ((err or out).strip().splitlines() or [f"exit {rc}"])[-1]
        return Run(note=f"failed: {last.strip()}"[:200])
    return Run(ms=float(m.group(1)), peak_mb=peak - baseline_mb)


def caffe_baseline(launch: Launcher, workdir: Path) -> float:
    """Caffe's RSS after its imports: the peak of `caffe-oracle time` on a one-ReLU net."""
    tiny = workdir / "tiny-relu.prototxt"
    tiny.write_text(TINY_NET)
    rc, out, err, peak = launch(oracle_cmd("time", str(tiny), "--iters", "1"))
    if rc != 0:
        raise RuntimeError(f"caffe-oracle time failed on a one-layer net:\n{err}")
    return peak


def worker_run(launch: Launcher, row: Row, tool: str, a: argparse.Namespace,
               workdir: Path) -> tuple[Run, dict]:
    out_npz = workdir / f"out-{tool}-{row.key}-b{row.batch}.npz"
    out_npz.unlink(missing_ok=True)
    spec = {"tool": tool, "root": str(ROOT), "prototxt": str(row.prototxt),
            "weights": str(row.weights), "onnx": str(row.onnx), "inputs": str(row.inputs),
            "out": str(out_npz), "threads": a.threads, "warmup": a.warmup, "iters": a.iters,
            "budget": a.budget, "opencv_version": OPENCV_VERSION, "tiny_net": TINY_NET}
    python = os.environ.get("CAFFE_FX_OPENCV_PYTHON", sys.executable) if tool == "opencv" \
        else sys.executable
    rc, out, err, peak = launch([python, str(WORKER), json.dumps(spec)])
    try:
        info = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        last = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or [f"exit {rc}"]
        return Run(note=f"failed: {last[0].strip()}"[:200]), {}
    run = Run(peak_mb=peak - info["baseline_rss_mb"], load_s=info["load_s"],
              first_s=info["first_s"])
    with np.load(out_npz) as z:
        got = {k.split(":", 1)[1]: z[k] for k in sorted(z.files, key=lambda k: int(k.split(":")[0]))}
    out_npz.unlink()
    run.note = parity(got, row.ref)
    if not run.note:
        run.ms = statistics.median(info["times_ms"])
    return run, info


def parity(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> str:
    """'' when every Caffe output is matched within TOL; else what differs.  Outputs are
    matched by name, else by position (ONNX and OpenCV may name them after layers)."""
    if len(got) != len(ref):
        return f"gives {len(got)} outputs ({', '.join(got)}), Caffe {len(ref)}"
    names = list(got)
    bad = []
    for i, (name, want) in enumerate(ref.items()):
        value = got[name] if name in got else got[names[i]]
        value = value.reshape(want.shape) if value.size == want.size else value
        rel = max_rel_diff(value, want)
        if not rel <= TOL:
            bad.append(f"{name} off by {rel:.2g} of Caffe's max magnitude")
    return "; ".join(bad)


def export_onnx(launch: Launcher, row: Row, workdir: Path, tree: str, again: bool) -> None:
    """caffe_fx's own ONNX export (`caffe-fx export`), cached per weights and batch (with
    `again`, made anew); `.tree` beside it records the committed caffe_fx/ tree it was
    made at.  Where the command refuses (its program differs from the GraphModule by more
    than its rtol 1e-4 / atol 1e-5), the same export without that check, said in the
    notes: the check against Caffe then decides."""
    path = workdir / f"{row.weights.stem}-b{row.batch}.onnx"
    stamp = path.with_suffix(".tree")
    if again or not (path.exists() and stamp.exists()):
        path.unlink(missing_ok=True)
        with np.load(row.inputs) as z:
            shapes = [f"{k}={','.join(map(str, z[k].shape))}" for k in z.files]
        print(f"  exporting {path.name} ...", flush=True)
        cmd = [sys.executable, "-m", "caffe_fx", "export", str(row.prototxt), str(row.weights),
               "-o", str(path)]
        for s in shapes:
            cmd += ["--input-shape", s]
        rc, out, err, _ = launch(cmd)
        if rc != 0:
            refusal = (err.strip().splitlines() or [f"exit {rc}"])[-1]
            spec = {"tool": "export", "root": str(ROOT), "prototxt": str(row.prototxt),
                    "weights": str(row.weights), "inputs": str(row.inputs), "onnx": str(path)}
            rc, out, err, _ = launch([sys.executable, str(WORKER), json.dumps(spec)])
            if rc != 0:
                row.notes.append(f"onnxruntime: export failed: {refusal}"[:240])
                return
            diff = re.search(r"max abs diff \S+", refusal)
            stamp.write_text(f"{tree} {diff.group(0) if diff else refusal}")
        else:
            stamp.write_text(tree)
    row.onnx_tree, _, note = stamp.read_text().partition(" ")
    if note:
        row.notes.append(f"onnxruntime: `caffe-fx export` refused its program ({note} from "
                         "the GraphModule), exported without that check")
    row.onnx = path


def git_rev(rev: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def prepare_rows(nets: list[str], batches: list[int], workdir: Path, launch: Launcher,
                 tools: list[str], reexport: bool) -> list[Row]:
    """Per net and batch: the weights, the input, Caffe's outputs and the ONNX file."""
    rows, tree = [], git_rev("HEAD:caffe_fx")
    print(f"caffe_fx/ tree {tree}", flush=True)
    for key in nets:
        title, rel = FORWARD_NETS[key]
        prototxt = MODELS / rel
        print(f"{title}: {prototxt}", flush=True)
        net_rows = [Row(key, title, b, prototxt) for b in batches]
        rows += net_rows
        try:
            weights, meta = prepare_net(key, prototxt, workdir)
        except Exception as e:  # noqa: BLE001  (report and carry on with the next net)
            for row in net_rows:
                row.notes.append(f"no weights: {first_line(e)}")
            continue
        for row in net_rows:
            row.weights = weights
            row.inputs, _ = make_inputs(key, meta, row.batch, workdir)
            try:
                row.ref = caffe_outputs(prototxt, weights, row.inputs)
            except Exception as e:  # noqa: BLE001
                row.notes.append(f"no Caffe outputs to check against: {first_line(e)}")
                continue
            if "onnxruntime" in tools:
                export_onnx(launch, row, workdir, tree, reexport)
    return rows


def run_rounds(rows: list[Row], tools: list[str], a: argparse.Namespace, workdir: Path,
               launch: Launcher, caffe_base: float | None,
               after_round: Callable[[int, dict[str, str]], None]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for r in range(a.rounds):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        for row in (x for x in rows if x.ref):
            for tool in order:
                if tool == "onnxruntime" and row.onnx is None:
                    continue
                if tool == "caffe":
                    est = row.median("caffe", "ms")
                    iters = a.iters if est is None else max(3, min(a.iters,
                                                                   int(a.budget * 1000 / est)))
                    run = caffe_run(launch, row, iters, caffe_base)
                else:
                    run, info = worker_run(launch, row, tool, a, workdir)
                    if info:
                        versions.setdefault(tool, f"{info['version']} ({info['threads']} threads)")
                row.runs.setdefault(tool, []).append(run)
                print(f"  round {r + 1} {row.title} b{row.batch} {tool}: "
                      f"{fmt(run.ms, '.1f')} ms, peak +{fmt(run.peak_mb, '.0f')} MB "
                      f"{run.note}", flush=True)
        after_round(r + 1, versions)
    return versions


def ratio(num: float | None, den: float | None, mark: bool = False) -> str:
    if num is None or den is None:
        return "-"
    r = num / den
    return f"{r:.2f}x" + ((" ✓" if r <= 1.0 else " ✗") if mark else "")


def row_notes(row: Row) -> str:
    notes = list(row.notes)
    for tool, runs in row.runs.items():
        seen = sorted({r.note for r in runs if r.note})
        notes += [f"{TOOLS[tool]}: {n} ({sum(r.note == n for r in runs)}/{len(runs)} rounds)"
                  for n in seen]
    return "; ".join(notes).replace("|", "/")


def time_table(rows: list[Row], tools: list[str]) -> list[str]:
    cols = ["net", "batch"]
    align = ["---", "---:"]
    for t in tools:
        cols.append(f"{TOOLS[t]} (ms)")
        if t != "caffe":
            cols.append("/ Caffe")
    cols += ["eager / best peer", "compile (s)", "torch.compile 1st call (s)", "notes"]
    align += ["---:"] * (len(cols) - 3) + ["---"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        caffe = row.median("caffe", "ms")
        cells = [row.title, str(row.batch)]
        for t in tools:
            ms = row.median(t, "ms")
            cells.append(fmt(ms, ".1f"))
            if t != "caffe":
                cells.append(ratio(ms, caffe))
        peers = [m for m in (row.median(p, "ms") for p in PEERS if p in tools) if m is not None]
        cells.append(ratio(row.median("eager", "ms"), min(peers) if peers else None, mark=True))
        cells.append(fmt(row.median("eager", "load_s"), ".2f"))
        firsts = [r.first_s for r in row.runs.get("inductor", []) if r.first_s is not None]
        cells.append(" / ".join(f"{s:.0f}" for s in firsts) or "-")
        cells.append(row_notes(row))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(rows: list[Row], tools: list[str]) -> list[str]:
    cols = ["net", "batch", *(f"{TOOLS[t]} (MB)" for t in tools)]
    if "caffe" in tools and "eager" in tools:
        cols.append("eager / Caffe")
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    for row in rows:
        cells = [row.title, str(row.batch), *(fmt(row.median(t, "peak_mb"), ".0f") for t in tools)]
        if "caffe" in tools and "eager" in tools:
            cells.append(ratio(row.median("eager", "peak_mb"), row.median("caffe", "peak_mb"),
                               mark=True))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(rows: list[Row], tools: list[str], a: argparse.Namespace, launch: Launcher,
           versions: dict[str, str], load: tuple[float, float], commit: str,
           done: int) -> str:
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    loads = sorted(launch.loads) or [load[0]]
    versions = {"caffe": "BVLC Caffe 1.0 CPU build (Debian 11, OpenBLAS) via "
                         "`caffe-oracle time`, median of its timed forwards after 1 warm-up",
                **versions}
    n = a.threads
    lines = [
        "# Forward time and peak memory: Caffe 1.0 vs caffe_fx vs onnxruntime vs OpenCV dnn (CPU)",
        "",
        f"- date: {when}; caffe_fx at {commit} (the working tree: other work in progress included)",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, "
        f"{platform.system()} {platform.release()}",
        f"- threads: {n} for every tool, each process pinned to CPUs "
        f"{','.join(map(str, launch.cpus))}: torch.set_num_threads({n}) and OMP_NUM_THREADS={n} "
        f"(eager, torch.compile; {wait_policy(launch.env, CAFFE_FX_SPIN)}), onnxruntime "
        f"intra_op_num_threads={n} and inter_op 1, OpenCV cv2.setNumThreads({n}), Caffe's "
        "OpenBLAS one thread per CPU it may run on (the oracle's chroot drops the environment)",
        *(f"- {TOOLS[t]}: {versions.get(t, 'no successful run')}" for t in tools),
        "- torch.compile: inductor with `freezing = True`; onnxruntime: `caffe-fx export` of "
        "the same net (dynamo exporter; caffe_fx/ tree "
        f"{', '.join(sorted({r.onnx_tree for r in rows if r.onnx_tree})) or '-'}), "
        "CPUExecutionProvider, default graph optimizations; "
        "OpenCV: `cv2.dnn.readNetFromCaffe(prototxt, caffemodel)`, DNN_BACKEND_OPENCV, CPU",
        f"- method: {done} of {a.rounds} rounds done; in each, every tool runs every row in a fresh process, "
        "the tools' order turning each round; a process makes "
        f"{a.warmup} warm-up forward(s), then up to {a.iters} timed ones (at least 3, stopping "
        f"after {a.budget:g} s); cells: median over rounds of each process's median",
        f"- parity: a process's time counts only when every output is within {TOL:g} of the "
        "max magnitude of `caffe-oracle forward`'s on the same weights and input (else: notes)",
        "- memory: peak RSS of the process (wait4's ru_maxrss) minus its RSS right after its "
        "imports (caffe_fx's: after compiling and running a one-ReLU net); Caffe's baseline "
        "is the peak of `caffe-oracle time` on that one-ReLU net"
        + (f" ({launch.caffe_base:.0f} MB)" if launch.caffe_base else ""),
        f"- load average (1 min): {load[0]:.1f} at start, {load[1]:.1f} at end; before each "
        f"process min {loads[0]:.1f}, median {statistics.median(loads):.1f}, max "
        f"{loads[-1]:.1f} on {os.cpu_count()} cores",
        "- weights: random (`caffe-oracle forward --randomize 7`); input N(0, 1)",
        f"- command: `python benchmarks/bench_forward.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "Forward time (ms; `/ Caffe`: the tool's time over Caffe's, below 1 is faster; "
        "`eager / best peer`: eager's time over the faster of onnxruntime and OpenCV, target "
        "<= 1 ✓):",
        "",
        *time_table(rows, tools),
        "",
        "Peak memory of inference (MB over the process's baseline after imports: loading the "
        "weights and the forwards; target: eager / Caffe <= 1 ✓):",
        "",
        *memory_table(rows, tools),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default=",".join(FORWARD_NETS),
                    help=f"comma-separated, from: {', '.join(FORWARD_NETS)}")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help=f"comma-separated, from: {', '.join(TOOLS)}")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per tool and row")
    ap.add_argument("--iters", type=int, default=10, help="timed forwards per process (at most)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed forwards before timing")
    ap.add_argument("--budget", type=float, default=10.0,
                    help="seconds of timed forwards per process (at least 3 forwards)")
    ap.add_argument("--threads", type=int, default=2, help="threads of every tool (default 2)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="cache for caffemodels, inputs, Caffe's outputs and ONNX files "
                         "(default: $TMPDIR/caffe_fx_bench); never inside the repo")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--reexport", action="store_true",
                    help="export the ONNX files again (they are cached in --workdir, the "
                         "caffe_fx/ tree they were made at in *.tree beside them)")
    a = ap.parse_args()

    nets, tools = csv_list(a.nets), csv_list(a.tools)
    for what, given, allowed in (("net", nets, FORWARD_NETS), ("tool", tools, TOOLS)):
        unknown = [n for n in given if n not in allowed]
        if unknown:
            ap.error(f"unknown {what}(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    tools = [t for t in TOOLS if t in tools]
    batches = [int(b) for b in csv_list(a.batches)]
    if a.threads < 1 or a.threads > len(os.sched_getaffinity(0)):
        ap.error(f"--threads {a.threads}: allowed 1..{len(os.sched_getaffinity(0))} "
                 "(the CPUs this process may run on)")
    workdir = (a.workdir or Path(tempfile.gettempdir()) / "caffe_fx_bench").resolve()
    if workdir.is_relative_to(ROOT):
        ap.error(f"--workdir {workdir} is inside the repository; use a folder outside it")
    workdir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    launch = Launcher(a.threads, a.timeout)
    commit = git_rev("HEAD")
    rows = prepare_rows(nets, batches, workdir, launch, tools, a.reexport)
    launch.loads.clear()  # the preparation's processes are not timed
    launch.caffe_base = caffe_baseline(launch, workdir) if "caffe" in tools else None

    def write(done: int, versions: dict[str, str]) -> str:
        """The report so far (after each round, so that a stopped run leaves its rounds)."""
        text = report(rows, tools, a, launch, versions, (load_start, os.getloadavg()[0]),
                      commit, done)
        if not a.no_write:
            a.out.write_text(text)
        return text

    versions = run_rounds(rows, tools, a, workdir, launch, launch.caffe_base, write)
    print()
    print(write(a.rounds, versions))
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if not a.no_write:
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
