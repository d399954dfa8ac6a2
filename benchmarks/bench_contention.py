"""Forward time on an idle machine and with other work keeping the same cores busy.

    python benchmarks/bench_contention.py [--nets googlenet,mobilenet_v2,resnet50]
        [--batches 1] [--rounds 2] [--hogs 2] [--tools caffe,eager,...]

Issue #13 asks that caffe_fx slow down under contention no more than Caffe and OpenCV do.
Each tool runs as bench_forward.py runs it (fresh process, the same 2 CPUs and threads,
outputs checked against Caffe's), once on the idle CPUs and once while `--hogs` busy
processes (one `while True: pass` per CPU, pinned there) compete for them; the slowdown
is busy / idle.  caffe_fx eager runs under libgomp's wait policies: `eager` (the
environment a user has: OMP_WAIT_POLICY unset, libgomp spins a while before sleeping),
`eager-passive` (OMP_WAIT_POLICY=PASSIVE: sleep at once) and `eager-spin` (a short spin,
GOMP_SPINCOUNT=--spincount).  Writes benchmarks/CONTENTION.md.  A script, not a test.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import FORWARD_NETS, ROOT, cpu_model, csv_list
from bench_forward import (Launcher, caffe_baseline, caffe_run, git_rev, prepare_rows,
                           worker_run)

EAGER = {"eager": {"OMP_WAIT_POLICY": None},
         "eager-passive": {"OMP_WAIT_POLICY": "PASSIVE"},
         "eager-spin": {"OMP_WAIT_POLICY": None}}  # + GOMP_SPINCOUNT, set in main
TITLES = {"caffe": "Caffe", "eager": "caffe_fx eager (libgomp default)",
          "eager-passive": "caffe_fx eager, OMP_WAIT_POLICY=PASSIVE",
          "eager-spin": "caffe_fx eager, GOMP_SPINCOUNT={spin}",
          "onnxruntime": "onnxruntime", "opencv": "OpenCV dnn"}


class Hogs:
    """`n` busy processes, one pinned to each of `cpus` in turn, while the block runs."""

    def __init__(self, n: int, cpus: list[int]):
        self.n, self.cpus, self.procs = n, cpus, []

    def __enter__(self) -> Hogs:
        for i in range(self.n):
            cpu = self.cpus[i % len(self.cpus)]
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu})))
        time.sleep(0.5)  # running before the tool starts
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs.clear()


def launcher_for(tool: str, base: Launcher, spin: int) -> Launcher:
    if tool not in EAGER:
        return base
    launch = Launcher(len(base.cpus), base.timeout)
    for key, value in EAGER[tool].items():
        if value is None:
            launch.env.pop(key, None)
        else:
            launch.env[key] = value
    if tool == "eager-spin":
        launch.env["GOMP_SPINCOUNT"] = str(spin)
    return launch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="googlenet,mobilenet_v2,resnet50")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--tools", default="caffe,eager,eager-passive,eager-spin,onnxruntime,opencv")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hogs", type=int, default=2, help="busy processes (one per CPU)")
    ap.add_argument("--spincount", type=int, default=20000, help="GOMP_SPINCOUNT of eager-spin")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--budget", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "caffe_fx_bench")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "CONTENTION.md")
    a = ap.parse_args()
    nets, tools = csv_list(a.nets), csv_list(a.tools)
    unknown = [n for n in nets if n not in FORWARD_NETS] + [t for t in tools if t not in TITLES]
    if unknown:
        sys.exit(f"unknown nets or tools: {', '.join(unknown)}")
    a.workdir.mkdir(parents=True, exist_ok=True)
    base = Launcher(a.threads, a.timeout)
    peer_tools = [t for t in tools if t in ("onnxruntime", "opencv")]
    rows = prepare_rows(nets, [int(b) for b in csv_list(a.batches)], a.workdir, base,
                        peer_tools, False)
    caffe_mb = caffe_baseline(base, a.workdir) if "caffe" in tools else 0.0
    times: dict[tuple[str, str, str], list[float]] = {}
    notes: dict[tuple[str, str], str] = {}
    a.warmup, a.iters, a.budget = a.warmup, a.iters, a.budget
    started = time.perf_counter()
    for r in range(a.rounds):
        for row in rows:
            order = tools[r % len(tools):] + tools[: r % len(tools)]
            for state in ("idle", "busy") if r % 2 == 0 else ("busy", "idle"):
                for tool in order:
                    launch = launcher_for(tool, base, a.spincount)
                    with Hogs(a.hogs if state == "busy" else 0, base.cpus):
                        if tool == "caffe":
                            run = caffe_run(launch, row, a.iters, caffe_mb)
                        else:
                            run, _ = worker_run(launch, row, "eager" if tool in EAGER else tool,
                                                a, a.workdir)
                    key = f"{row.title} b{row.batch}"
                    if run.ms is None:
                        notes[(key, tool)] = run.note
                    else:
                        times.setdefault((key, tool, state), []).append(run.ms)
                    print(f"  round {r + 1} {key} {tool} {state}: "
                          f"{run.ms if run.ms is not None else run.note} ms", flush=True)
    lines = [
        "# Forward time idle and under contention (CPU)", "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; caffe_fx at "
        f"{git_rev('HEAD')}", f"- machine: {cpu_model()}, {os.cpu_count()} logical cores",
        f"- every tool: {a.threads} threads pinned to CPUs {','.join(map(str, base.cpus))}, "
        "as bench_forward.py runs it (fresh process, outputs checked against Caffe's)",
        f"- busy: {a.hogs} processes spinning in Python, one pinned to each CPU, started "
        "before the tool and stopped after it; idle: none",
        f"- {a.rounds} rounds, idle and busy alternating first; cells: median over rounds "
        "of each process's median forward; slowdown: busy / idle",
        f"- command: `python benchmarks/bench_contention.py --nets {a.nets} --batches "
        f"{a.batches} --rounds {a.rounds} --hogs {a.hogs} --spincount {a.spincount}`", "",
        "| net | tool | idle (ms) | busy (ms) | slowdown |", "|---|---|---:|---:|---:|"]
    for row in rows:
        key = f"{row.title} b{row.batch}"
        for tool in tools:
            idle = times.get((key, tool, "idle"))
            busy = times.get((key, tool, "busy"))
            i = statistics.median(idle) if idle else None
            b = statistics.median(busy) if busy else None
            slow = f"{b / i:.2f}x" if i and b else notes.get((key, tool), "-")[:80]
            lines.append(f"| {key} | {TITLES[tool].format(spin=a.spincount)} | "
                         f"{i if i is None else f'{i:.1f}'} | {b if b is None else f'{b:.1f}'} "
                         f"| {slow} |")
    lines += ["", f"(total {time.perf_counter() - started:.0f} s)", ""]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
