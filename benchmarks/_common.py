"""What the benchmark scripts share: where the models and the oracle live, one call into
real Caffe (../shared/caffe-oracle), and the small formatting helpers of their tables.

Imports no torch: bench_forward.py and bench_train.py set OMP_WAIT_POLICY before torch.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORACLE = Path(os.environ.get("CAFFE_ORACLE",
                             ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"))
MODELS = Path(os.environ.get("CAFFE_FX_MODELS", ROOT.parent / "shared" / "models"))


def oracle(*args: str) -> str:
    """`caffe-oracle ARGS`'s standard output; RuntimeError with its stderr's end on failure."""
    proc = subprocess.run([str(ORACLE), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe-oracle {args[0]} failed:\n{proc.stderr[-1500:]}")
    return proc.stdout


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:160]


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
