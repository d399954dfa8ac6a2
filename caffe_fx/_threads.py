"""libgomp's spin before its threads sleep, chosen for machines whose cores are shared.

torch's CPU wheels run their thread pool on libgomp, which reads its wait policy from
the environment once, when torch is imported.  Its default spins about 300k iterations
before sleeping: the fastest on an idle machine, but threads spinning at barriers take
the cores from the threads still working when another process competes for them.
`benchmarks/bench_contention.py` (CONTENTION.md, 2 cores, two busy processes, batch 1):
GoogLeNet slowed 4.2x with the default, 2.5x with OMP_WAIT_POLICY=PASSIVE (which costs
30-50% idle) and 2.2x with GOMP_SPINCOUNT=20000, whose idle time matched the default's;
OpenCV dnn slowed 3.2x, Caffe 20x.  So importing caffe_fx before torch sets
GOMP_SPINCOUNT=20000, unless the environment already sets GOMP_SPINCOUNT or
OMP_WAIT_POLICY, or CAFFE_FX_GOMP_SPINCOUNT=0 (another value replaces 20000).  A process
that imported torch first keeps libgomp's default: set the variable before starting it.
"""
from __future__ import annotations

import os
import sys

SPINCOUNT = "20000"


def choose_spin() -> str | None:
    """Sets GOMP_SPINCOUNT for the torch this process has not imported yet; returns the
    value set, or None."""
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in os.environ \
            or "OMP_WAIT_POLICY" in os.environ:
        return None
    value = os.environ.get("CAFFE_FX_GOMP_SPINCOUNT", SPINCOUNT)
    if value == "0":
        return None
    os.environ["GOMP_SPINCOUNT"] = value
    return value
