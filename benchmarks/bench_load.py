"""Weights at disk speed: how long caffe_fx takes to load a caffemodel, against the disk.

    python benchmarks/bench_load.py [--cases vgg16,vgg16_cfx,vgg16_h5,cifar_v1] [--repeat 3]
        [--workdir DIR] [--no-caffe] [--cold] [--out benchmarks/LOAD.md | --no-write]

Each measurement runs in a fresh Python process (imports done before the timer starts)
and reports its wall time and peak RSS (getrusage ru_maxrss) and the RSS it had before
the timer.  Real Caffe's load (caffe.Net(P, TEST, weights=W), src/caffe/net.cpp's
CopyTrainedLayersFrom) runs in the reference chroot (../shared/caffe-oracle).  See
benchmarks/LOAD.md for what the columns mean.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import MODELS, ORACLE, ROOT

CAFFE_ROOT = Path(os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
VGG = "davidgengenbach+vgg-caffe/model/VGG_ILSVRC_16_layers_deploy.prototxt"
CIFAR_NET = "jwcom79+myproject/examples/cifar10/cifar10_quick.prototxt"
CIFAR_V1 = "ikkiChung+Prediction-Example-With-Caffe/examples/cifar10/cifar10_quick_iter_5000.caffemodel"
CASES = {
    # key: (title, prototxt, how the weights are made)
    "vgg16": ("VGG16, binary (V2, shape)", VGG, "randomize"),
    "vgg16_cfx": ("VGG16, binary saved by caffe_fx (aligned)", VGG, "caffe_fx"),
    "vgg16_h5": ("VGG16, HDF5", VGG, "hdf5"),
    "cifar_v1": ("CIFAR-10 quick, binary V1 (legacy 4-D)", CIFAR_NET, "shared:" + CIFAR_V1),
}
MODES = ("read", "import", "compile_no_weights", "compile", "compile_read", "compile_touch",
         "protobuf")

# --- the measured work: each runs in its own process (`--child MODE NET W`) -----------


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _build_only(net: str) -> None:
    """compile() up to the fx graph on the meta device: no weights, no memory."""
    from caffe_fx import pipeline

    pipeline.lower(pipeline.prepare(net, phase="test"))


def child(mode: str, net: str, weights: str) -> dict:
    import numpy as np

    if mode == "import":
        t = time.perf_counter()
        import torch

        import caffe_fx
        imported = time.perf_counter() - t
        _build_only(net)
        return {"wall": imported, "first": time.perf_counter() - t, "before_kb": 0}
    if mode.startswith("compile"):
        import torch

        import caffe_fx
        _build_only(net)  # pays the lazy imports of the first compile in a process
    if mode == "protobuf":
        from caffe_fx.proto import caffe_pb2
    kept: object = None  # what the timed work made, alive until the timer stops
    before = _rss_kb()
    t = time.perf_counter()
    if mode == "read":
        with open(weights, "rb", buffering=0) as f:
            buf = np.empty(os.fstat(f.fileno()).st_size, np.uint8)
            view, done = memoryview(buf), 0
            while done < buf.size:
                done += f.readinto(view[done:])
        kept = buf
    elif mode in ("compile", "compile_read"):  # compile_read: CAFFE_FX_MMAP=0 (run_child)
        kept = caffe_fx.compile(net, weights)
    elif mode == "compile_touch":  # and every weight read once: the map's pages come in
        kept = caffe_fx.compile(net, weights)
        with torch.no_grad():
            for tensor in [*kept.parameters(), *kept.buffers()]:
                tensor.sum()
    elif mode == "compile_no_weights":
        kept = caffe_fx.compile(net)
    elif mode == "protobuf":
        msg = caffe_pb2.NetParameter.FromString(Path(weights).read_bytes())
        kept = [np.array(b.data, dtype=np.float32) for lay in list(msg.layer) + list(msg.layers)
                  for b in lay.blobs]
        del msg
    wall = time.perf_counter() - t
    shared = 0
    if mode.startswith("compile") and kept is not None:
        from caffe_fx.frontend.mapped import backing_file

        shared = sum(p.nbytes for p in (t.detach().numpy() for t in
                                        [*kept.parameters(), *kept.buffers()])
                     if backing_file(p) == os.path.abspath(weights))
    del kept
    return {"wall": wall, "before_kb": before, "shared_bytes": shared}


def drop_cache(path: Path) -> None:
    """posix_fadvise(DONTNEED): the file's clean pages leave the page cache."""
    with open(path, "rb") as f:
        os.fsync(f.fileno()) if os.access(path, os.W_OK) else None
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def run_child(mode: str, net: Path, weights: Path, cold: bool = False) -> dict:
    code = (f"import sys, json, resource; sys.path.insert(0, {str(ROOT)!r}); "
            f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_load as b; "
            f"r = b.child({mode!r}, {str(net)!r}, {str(weights)!r}); "
            "r['peak_kb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "print('RESULT', json.dumps(r))")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if mode == "compile_read":
        env["CAFFE_FX_MMAP"] = "0"
    if cold:
        drop_cache(weights)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT "):])


def run_caffe(net: Path, weights: Path) -> dict:
    """pycaffe's load in the reference chroot, the folders bind-mounted as the oracle does."""
    script = ("import caffe, time, resource; t = time.time(); "
              f"caffe.Net({str(net)!r}, caffe.TEST, weights={str(weights)!r}); "
              "print('RESULT', time.time() - t, "
              "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    dirs = sorted({str(net.parent), str(weights.parent)})
    mounts = "; ".join(f"mkdir -p {shlex.quote(str(CAFFE_ROOT) + d)} && mount --bind "
                       f"{shlex.quote(d)} {shlex.quote(str(CAFFE_ROOT) + d)}" for d in dirs)
    inner = (f"{mounts}; exec chroot {shlex.quote(str(CAFFE_ROOT))} /usr/bin/env -i "
             f"PATH=/usr/bin:/bin HOME=/root GLOG_minloglevel=2 python3 -c {shlex.quote(script)}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True,
                          text=True, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"Caffe failed:\n{proc.stderr[-3000:]}")
    _, wall, peak = line[-1].split()
    return {"wall": float(wall), "peak_kb": int(peak), "before_kb": 0}


# --- making the caffemodels -----------------------------------------------------------


def prepare(key: str, workdir: Path) -> tuple[Path, Path]:
    _, proto, how = CASES[key]
    net = MODELS / proto
    if how.startswith("shared:"):
        return net, MODELS / how[len("shared:"):]
    digest = hashlib.sha256(net.read_bytes()).hexdigest()[:12]
    binary = workdir / f"vgg16-{digest}.caffemodel"
    if not binary.exists():
        partial = workdir / f"vgg16-{digest}.partial.caffemodel"
        print(f"making {binary} with real Caffe (a minute or two)", file=sys.stderr)
        subprocess.run([str(ORACLE), "forward", str(net), "--randomize", "7",
                        "--save-weights", str(partial),
                        "--out", str(workdir / "record.npz")], check=True,
                       capture_output=True)
        (workdir / "record.npz").unlink(missing_ok=True)
        partial.replace(binary)
    if how == "randomize":
        return net, binary
    if how == "caffe_fx":
        aligned = workdir / f"vgg16-{digest}.caffe_fx.caffemodel"
        if not aligned.exists():  # in a child: the weights would stay in this process's
            # RSS, and every child after a fork starts with its parent's ru_maxrss
            code = ("import sys, caffe_fx; from caffe_fx.frontend.read import read_weights; "
                    f"w = read_weights({str(binary)!r}); caffe_fx.save_caffemodel("
                    f"{str(aligned)!r}, {{k: [b.array for b in v] for k, v in w.items()}}, "
                    f"{str(net)!r})")
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        return net, aligned
    h5 = workdir / f"vgg16-{digest}.caffemodel.h5"
    if not h5.exists():
        partial = workdir / f"vgg16-{digest}.partial.caffemodel.h5"
        print(f"making {h5} with real Caffe's Net::ToHDF5", file=sys.stderr)
        script = (f"import caffe; caffe.Net({str(net)!r}, caffe.TEST, "
                  f"weights={str(binary)!r}).save_hdf5({str(partial)!r})")
        mounts = " && ".join(f"mkdir -p {CAFFE_ROOT}{d} && mount --bind {d} {CAFFE_ROOT}{d}"
                             for d in sorted({str(net.parent), str(workdir)}))
        inner = (f"{mounts} && exec chroot {CAFFE_ROOT} /usr/bin/env -i "
                 f"PATH=/usr/bin:/bin GLOG_minloglevel=2 python3 -c {shlex.quote(script)}")
        subprocess.run(["unshare", "-m", "sh", "-c", inner], check=True)
        partial.replace(h5)
    return net, h5


# --- the table ------------------------------------------------------------------------


def measure(key: str, a: argparse.Namespace, workdir: Path) -> dict:
    net, weights = prepare(key, workdir)
    size = weights.stat().st_size
    row: dict = {"case": CASES[key][0], "size_mb": size / 1e6}
    runs: dict[str, list[dict]] = {m: [] for m in MODES + ("caffe",)}
    for _ in range(a.repeat):  # interleaved, so that load changes hit every column
        for mode in MODES:
            if mode == "protobuf" and weights.suffix == ".h5":
                continue
            if mode in ("compile_read", "compile_touch") and weights.stat().st_size < 1 << 24:
                continue  # read anyway: files under 16 MiB are not mapped
            runs[mode].append(run_child(mode, net, weights, a.cold and mode != "import"))
        if not a.no_caffe:
            runs["caffe"].append(run_caffe(net, weights))
    for mode, rs in runs.items():
        if rs:
            row[mode] = {"wall": statistics.median(r["wall"] for r in rs),
                         **({"first": statistics.median(r["first"] for r in rs)}
                            if "first" in rs[0] else {}),
                         "peak_mb": max(r["peak_kb"] for r in rs) * 1024 / 1e6,
                         "shared_mb": min(r.get("shared_bytes", 0) for r in rs) / 1e6,
                         "before_mb": min(r["before_kb"] for r in rs) * 1024 / 1e6}
    return row


def _fmt(row: dict, mode: str, what: str) -> str:
    r = row.get(mode)
    if r is None:
        return "–"
    if what in ("wall", "first"):
        return f"{r[what]:.2f}" if what in r else "–"
    if what == "peak":
        return f"{r['peak_mb']:.0f}"
    return f"{r['peak_mb'] - r['before_mb']:.0f}"


def table(rows: list[dict]) -> str:
    head = ("| caffemodel | size (MB) | read bytes (s) | compile() with weights (s) | "
            "÷ read | shared with the file (MB) | + every weight read once (s) | "
            "compile, CAFFE_FX_MMAP=0 (s) | compile peak RSS (MB) | added by compile (MB) | "
            "÷ size | compile, no weights (s) | import torch+caffe_fx (s) | "
            "+ first build (s) | protobuf parse + np.array (s) | protobuf peak (MB) | "
            "Caffe load (s) | Caffe peak (MB) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            "---:|---:|---:|\n")
    lines = []
    for r in rows:
        c = r["compile"]
        ratio_t = c["wall"] / r["read"]["wall"]
        added = c["peak_mb"] - c["before_mb"]
        ratio_m = added / r["size_mb"]
        ok_t = "✓" if ratio_t <= 1.1 else "✗"
        ok_m = "✓" if ratio_m <= 1.2 else "✗"
        lines.append(
            f"| {r['case']} | {r['size_mb']:.1f} | {_fmt(r, 'read', 'wall')} | "
            f"{c['wall']:.2f} | {ratio_t:.2f} {ok_t} | {c['shared_mb']:.0f} | "
            f"{_fmt(r, 'compile_touch', 'wall')} | {_fmt(r, 'compile_read', 'wall')} | "
            f"{c['peak_mb']:.0f} | {added:.0f} | "
            f"{ratio_m:.2f} {ok_m} | {_fmt(r, 'compile_no_weights', 'wall')} | "
            f"{_fmt(r, 'import', 'wall')} | {_fmt(r, 'import', 'first')} | "
            f"{_fmt(r, 'protobuf', 'wall')} | "
            f"{_fmt(r, 'protobuf', 'peak')} | {_fmt(r, 'caffe', 'wall')} | "
            f"{_fmt(r, 'caffe', 'peak')} |")
    return head + "\n".join(lines) + "\n"


def header(a: argparse.Namespace, load: tuple[float, float]) -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"Measured {datetime.date.today()} on {cpu} ({os.cpu_count()} cores), Python "
            f"{platform.python_version()}, torch {torch.__version__}; median of {a.repeat} "
            f"fresh processes per cell, page cache "
            f"{'cold (posix_fadvise DONTNEED before each process)' if a.cold else 'warm (the file was read just before)'}; "
            f"load average {load[0]:.1f} at start, {load[1]:.1f} at end.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--no-caffe", action="store_true")
    ap.add_argument("--cold", action="store_true",
                    help="drop the weights from the page cache before each process")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "LOAD.md")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    workdir = (a.workdir or Path(tempfile.gettempdir()) / "caffe_fx_bench").resolve()
    if workdir.is_relative_to(ROOT):
        ap.error(f"--workdir {workdir} is inside the repository; use a folder outside it")
    workdir.mkdir(parents=True, exist_ok=True)
    keys = [k for k in a.cases.split(",") if k]
    unknown = sorted(set(keys) - set(CASES))
    if unknown:
        ap.error(f"unknown --cases {unknown}; allowed: {', '.join(CASES)}")
    start = os.getloadavg()[0]
    rows = [measure(k, a, workdir) for k in keys]
    text = header(a, (start, os.getloadavg()[0])) + "\n" + table(rows)
    print(text)
    if not a.no_write:
        out = a.out
        marker = "<!-- results cold -->" if a.cold else "<!-- results -->"
        old = out.read_text() if out.exists() else ""
        body, _, rest = old.partition(marker)
        other = "<!-- results -->" if a.cold else "<!-- results cold -->"
        keep = rest[rest.index(other):] if other in rest else ""  # the other table
        tmp = out.with_suffix(".tmp")
        tmp.write_text(body + marker + "\n" + text + ("\n" + keep if keep else ""))
        tmp.replace(out)


if __name__ == "__main__":
    main()
