"""The deployable compiled artifact: `caffe-fx export --compiled` against eager and torch.compile.

    python benchmarks/bench_aot.py [--nets alexnet,googlenet] [--batch 1] [--iters 20]
        [--rounds 3] [--workdir DIR] [--out benchmarks/AOT.md | --no-write]

Per net, each in fresh processes: the AOTInductor package's build time (`caffe-fx export
--compiled`, once), then `--rounds` interleaved rounds of three workers: eager (the
GraphModule `compile()` returns), torch.compile (Inductor; its first round on an empty
cache, later rounds on the cache the first left: Inductor's FX graph and AOTAutograd
caches) and the package (`torch._inductor.aoti_load_package`).  Each worker reports its
set-up time (compile(), compile() + torch.compile's first call, or the package's load, the
imports not counted) and the median of `--iters` forwards (torch.no_grad, after warm-up),
and its outputs are checked against real Caffe's on the same weights and input
(_common.caffe_outputs, within 1e-4 of the blob's max) before its time is believed.  The
weights are _common.prepare_net's random ones.  Needs the oracle and ../shared/models,
as bench_forward.py.
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

from _common import (FORWARD_NETS, MODELS, ROOT, caffe_outputs, cpu_model,  # noqa: E402
                     csv_list, fmt, make_inputs, max_rel_diff, prepare_net,
                     wait_policy)

TOL = 1e-4
MODES = ("eager", "torch.compile", "package")


def worker(mode: str, prototxt: Path, weights: Path, inputs: Path, package: Path,
           iters: int) -> dict:
    """One mode in this (fresh) process: set-up seconds, forward ms, outputs."""
    import numpy as np
    import torch
    import torch._inductor  # noqa: F401  (imports are not the artifact's load time)

    with np.load(inputs) as z:
        feed = {k: torch.from_numpy(z[k]) for k in z.files}
    start = time.perf_counter()
    if mode == "package":
        run = torch._inductor.aoti_load_package(str(package))
    else:
        shapes = {k: tuple(v.shape) for k, v in feed.items()}
        run = caffe_fx.compile(prototxt, weights, input_shapes=shapes)
        if mode == "torch.compile":
            run = torch.compile(run)
    with torch.no_grad():
        out = run(**feed)  # torch.compile compiles here
        setup = time.perf_counter() - start
        for _ in range(2):
            run(**feed)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            run(**feed)
            times.append(time.perf_counter() - t)
    from torch._dynamo.utils import counters

    np.savez(package.with_suffix(f".{mode}.npz"), **{k: v.numpy() for k, v in out.items()})
    return {"setup_s": setup, "forward_ms": 1e3 * statistics.median(times),
            "cache": dict(counters["inductor"]) if mode == "torch.compile" else {}}


def spawn(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                           else f"exit {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_net(key: str, batch: int, iters: int, rounds: int, workdir: Path) -> list[str]:
    title, rel = FORWARD_NETS[key]
    prototxt = MODELS / rel
    weights, meta = prepare_net(key, prototxt, workdir)
    inputs, _ = make_inputs(key, meta, batch, workdir)
    want = caffe_outputs(prototxt, weights, inputs)
    env = dict(os.environ)
    env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix=f"inductor-{key}-", dir=workdir)
    package = workdir / f"{key}-b{batch}.pt2"
    package.unlink(missing_ok=True)
    shape = ",".join(str(d) for d in [batch, *meta["blobs"][meta["inputs"][0]][1:]])
    t = time.perf_counter()
    build = subprocess.run(
        [sys.executable, "-m", "caffe_fx", "export", str(prototxt), str(weights), "-o",
         str(package), "--compiled", "--input-shape", f"{meta['inputs'][0]}={shape}"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    build_s = time.perf_counter() - t
    if build.returncode != 0:
        raise RuntimeError(f"{title}: caffe-fx export --compiled failed: {build.stderr.strip()}")
    print(f"  {title} b{batch}: package built in {build_s:.0f} s "
          f"({package.stat().st_size / 2**20:.0f} MiB)", flush=True)
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES:
            res = spawn(["--worker", mode, str(prototxt), str(weights), str(inputs),
                         str(package), str(iters)], env)
            import numpy as np

            with np.load(package.with_suffix(f".{mode}.npz")) as z:
                err = max(max_rel_diff(z[b], want[b]) for b in want)
            if err > TOL:
                raise RuntimeError(f"{title}: {mode} differs from Caffe by {err:.3g} (> {TOL})")
            res["err"] = err
            results[mode].append(res)
            print(f"  round {r + 1} {mode}: set-up {res['setup_s']:.2f} s, forward "
                  f"{res['forward_ms']:.1f} ms, vs Caffe {err:.1e} {res['cache'] or ''}",
                  flush=True)
    eager_ms = statistics.median(x["forward_ms"] for x in results["eager"])
    rows = []
    for mode in MODES:
        xs = results[mode]
        ms = statistics.median(x["forward_ms"] for x in xs)
        first = xs[0]["setup_s"]
        later = statistics.median(x["setup_s"] for x in xs[1:]) if len(xs) > 1 else None
        extra = f"{build_s:.0f}" if mode == "package" else "-"
        rows.append(f"| {title} | {batch} | {mode} | {extra} | {first:.2f} | "
                    f"{fmt(later, '.2f')} | {ms:.1f} | {eager_ms / ms:.2f} | "
                    f"{max(x['err'] for x in xs):.1e} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", type=csv_list, default=["alexnet", "googlenet"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "caffe_fx_bench")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "AOT.md")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", nargs=6, metavar="ARG", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        mode, proto, weights, inputs, package, iters = a.worker
        print(json.dumps(worker(mode, Path(proto), Path(weights), Path(inputs),
                                Path(package), int(iters))))
        return 0
    a.workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for key in a.nets:
        rows += bench_net(key, a.batch, a.iters, a.rounds, a.workdir)
    import torch

    load_after = os.getloadavg()
    table = "\n".join([
        f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, "
        f"{wait_policy()}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {a.rounds} rounds of {a.iters} forwards, interleaved.",
        "",
        "| net | batch | mode | build (s) | set-up, first (s) | set-up, later (s) | "
        "forward (ms) | eager / that | vs Caffe |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows])
    print(table)
    if not a.no_write:
        a.out.write_text("# The compiled artifact against eager and torch.compile\n\n"
                         "Written by `python benchmarks/bench_aot.py` (its docstring says "
                         "what it measures).\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
