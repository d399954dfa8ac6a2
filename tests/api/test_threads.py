"""caffe_fx/_threads.py: importing caffe_fx before torch picks libgomp's spin count."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = ("import os, sys; {first}; import caffe_fx, torch; "
         "print(os.environ.get('GOMP_SPINCOUNT'))")


def _run(first: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "CAFFE_FX_GOMP_SPINCOUNT")}
    clean.update(env, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=clean,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("first, env, expected", [
    ("pass", {}, "20000"),  # caffe_fx first: set before libgomp reads it
    ("import torch", {}, "None"),  # torch first: too late, left alone
    ("pass", {"OMP_WAIT_POLICY": "PASSIVE"}, "None"),  # the user's policy wins
    ("pass", {"CAFFE_FX_GOMP_SPINCOUNT": "5000"}, "5000"),
])
def test_spin_count(first, env, expected):
    assert _run(first, **env) == expected
