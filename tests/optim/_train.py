"""The training loop the solver goldens are checked with (also run by
tools/make_solver_goldens.py for the resume-in-Caffe proof): the oracle's `solve` as
plain torch, for nets with Input layers fed from '<blob>@<k>' arrays."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

import caffe_fx
from caffe_fx.optim import CaffeLR, CaffeOptimizer, from_solver

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "solvers"


def start(case: str, weights: str | Path | None = None, golden: Path = GOLDEN
          ) -> tuple[torch.fx.GraphModule, CaffeOptimizer, CaffeLR]:
    """The case's net (train phase, from its W0 or `weights`), optimizer, scheduler."""
    net = (golden / f"{case}.solver.prototxt").read_text().split('net: "')[1].split('"')[0]
    gm = caffe_fx.compile(golden / net, weights or golden / f"{net.split('.')[0]}_w0.caffemodel",
                          phase="train")
    opt, sched = from_solver(golden / f"{case}.solver.prototxt", gm)
    return gm, opt, sched


def run(gm: torch.fx.GraphModule, opt: CaffeOptimizer, sched: CaffeLR,
        inputs: Mapping[str, np.ndarray], first: int, last: int) -> tuple[list, list]:
    """Iterations first..last-1 as cmd_solve runs them: feed '<blob>@<it % K>', iter_size
    forward/backward passes (their grads summed), one step; returns (losses, lrs)."""
    keys = sorted({int(k.rsplit("@", 1)[1]) for k in inputs if "@" in k})
    losses, lrs = [], []
    for it in range(first, last):
        k = keys[it % len(keys)]
        feed = {b.rsplit("@", 1)[0]: torch.from_numpy(v) for b, v in inputs.items()
                if b.endswith(f"@{k}")}
        opt.zero_grad()
        for _ in range(opt.iter_size):
            loss = gm(**feed)["loss"].sum()
            loss.backward()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses, lrs


def params_of(gm: torch.fx.GraphModule) -> dict[str, np.ndarray]:
    """'param/<layer>/<i>' -> array, as the oracle records them."""
    out = {}
    for name, spec in gm.meta["caffe"].param_specs.items():
        try:
            t = gm.get_parameter(name)
        except AttributeError:
            t = gm.get_buffer(name)
        out[f"param/{spec.layer}/{spec.blob_index}"] = t.detach().numpy().copy()
    return out
