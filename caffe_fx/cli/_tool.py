"""What `caffe-fx train`, `test` and `time` share, as tools/caffe.cpp shares it.

Caffe's gflags spellings (`-model M`, `-model=M`, `-sigint_effect`) beside ours, the
`-gpu` list (get_gpus), the phase flag (get_phase_from_flags), a compiled net with its
data feeds or random inputs, the loss Net::Forward sums, and floats printed as glog's
`<<` prints them (six significant digits).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ..errors import DeviceError, InputError


def caffe_option(p: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """`--name` (and `--name-with-dashes`) plus gflags' `-name` single-dash spelling;
    `-name=value` works too (argparse splits it)."""
    spellings = [f"--{name.replace('_', '-')}"]
    if "_" in name:
        spellings.append(f"--{name}")
    spellings.append(f"-{name}")
    p.add_argument(*spellings, dest=name, **kwargs)


def add_gpu_option(p: argparse.ArgumentParser, *, many: bool) -> None:
    caffe_option(p, "gpu", default="", metavar="IDS" if many else "ID",
                 help="run on CUDA device ID (Caffe's -gpu)" + (
                     "; a list 0,1 or `all` trains on one process per device, gradients "
                     "averaged (the effective batch is multiplied by their number)"
                     if many else "; several given, the first is used (as caffe does)"))


def add_phase_option(p: argparse.ArgumentParser, default: str) -> None:
    caffe_option(p, "phase", type=_phase, default=default, metavar="PHASE",
                 help=f"TRAIN or TEST: which layers to keep (default: {default})")
    caffe_option(p, "level", type=int, default=0, help="the NetState level (default 0)")
    caffe_option(p, "stage", default="", metavar="STAGES",
                 help="NetState stages, separated by ','")


def _phase(text: str) -> str:
    if text.lower() not in ("train", "test"):
        raise argparse.ArgumentTypeError(f"phase must be TRAIN or TEST, not {text!r}")
    return text.lower()


def stages(args: argparse.Namespace) -> list[str]:
    # caffe.cpp splits "" into [""], a stage named ""; no net names one, so it is dropped.
    return [s for s in args.stage.split(",") if s]


def parse_gpus(text: str) -> list[int]:
    """get_gpus: "" -> [], "all" -> every CUDA device, "0,1" -> [0, 1]."""
    import torch

    if not text:
        return []
    if text == "all":
        count = torch.cuda.device_count()
        if count == 0:
            raise DeviceError("-gpu all: no CUDA device is visible; run without -gpu "
                              "for the CPU")
        return list(range(count))
    try:
        ids = [int(s) for s in text.split(",")]
    except ValueError:
        raise InputError(f"-gpu {text!r}: expected device ids separated by ',' (e.g. 0,1) "
                         "or `all`") from None
    count = torch.cuda.device_count()
    bad = [i for i in ids if i < 0 or i >= count]
    if bad:
        raise DeviceError(f"-gpu {text}: no CUDA device {bad[0]} (this machine has "
                          f"{count}{'' if count else '; run without -gpu for the CPU'})")
    if len(set(ids)) != len(ids):
        raise InputError(f"-gpu {text}: a device is listed twice")
    return ids


def device_for(gpus: Sequence[int]) -> Any:
    import torch

    return torch.device(f"cuda:{gpus[0]}") if gpus else torch.device("cpu")


def g(x: float) -> str:
    """A float as C++'s `ostream << float` prints it: %g with six significant digits."""
    if math.isnan(x):
        return "nan" if math.copysign(1.0, x) > 0 else "-nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


@dataclass
class LoadedNet:
    """A compiled net ready to run: its GraphModule on `device`, the phase-filtered
    NetParameter (Caffe's layers, Splits included), the data feed when it has data
    layers, and each output's loss weight (Layer::SetLossWeights)."""

    gm: Any
    net: Any
    device: Any
    feed: Any = None
    loss_weights: dict[str, float] = field(default_factory=dict)

    @property
    def outputs(self) -> list[str]:
        """Net::Init's output blobs: a std::set<string>, so sorted by name."""
        return sorted(self.gm.meta["caffe"].outputs)

    def inputs(self) -> dict[str, Any]:
        """One batch for every input of the graph: the data feed's tops, and zeros for
        the rest (what an Input blob holds in Caffe until something writes it)."""
        import torch

        batch: dict[str, Any] = {}
        if self.feed is not None:
            for top, value in self.feed.next().items():
                batch[top] = torch.as_tensor(value).to(self.device)
        shapes = self.gm.meta["caffe"].blob_shapes
        for name in self.gm.meta["caffe"].inputs:
            if name not in batch:
                batch[name] = torch.zeros(shapes[name], device=self.device)
        return batch

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The graph on one batch keyed by Caffe's blob names (placeholders may carry
        sanitised names), in placeholder order."""
        blobs = [n.meta.get("caffe_blob", n.target) for n in self.gm.graph.nodes
                 if n.op == "placeholder"]
        return self.gm(*(batch[b] for b in blobs))

    def loss(self, out: Mapping[str, Any]) -> Any:
        """Net::Forward's loss: the sum of each loss top times its loss weight; None
        when the net has no loss output."""
        terms = [w * out[b].sum() for b, w in self.loss_weights.items() if b in out and w]
        return sum(terms[1:], terms[0]) if terms else None

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()


def open_feed(net: Any, *, phase: int, where: str, required: bool,
              rank: int = 0, world_size: int = 1) -> Any:
    """caffe_fx.data.open_feed for the net's data layers; None when it has none.  When
    the data runtime is absent: None, or (`required`) an error naming the layers."""
    from ..data import DATA_LAYER_TYPES

    data_layers = [layer for layer in net.layer if layer.type in DATA_LAYER_TYPES]
    if not data_layers:
        return None
    try:
        from ..data import open_feed as _open
    except ImportError:
        if not required:
            return None
        names = ", ".join(f"'{x.name}' ({x.type})" for x in data_layers)
        raise InputError(f"{where}: data layers {names} need caffe_fx.data's batch reader, "
                         "which this installation lacks") from None
    return _open(net, phase=phase, where=where, rank=rank, world_size=world_size)


def load_net(model: str, weights: str | None, *, phase: str, level: int,
             stage: Sequence[str], device: Any, feed: bool, feed_required: bool,
             caffe_proto: str | None = None, fuse: bool = True,
             trust_python_layers: bool = False) -> LoadedNet:
    """compile() plus the phase-filtered NetParameter and the data feed."""
    from .. import pipeline
    from ..compiler import compile
    from ..data.top_shapes import READS_BATCHES
    from ..lowering.registry import top_loss_weights

    prepared = pipeline.prepare(model, phase=phase, level=level, stages=stage,
                                caffe_proto=caffe_proto)
    net = prepared.net
    # With a feed, the data layers' tops are read, not given: no --input-shape advice.
    token = READS_BATCHES.set(True) if feed else None
    try:
        gm = compile(model, weights, phase=cast(Literal["train", "test"], phase),
                     level=level, stages=stage, caffe_proto=caffe_proto, fuse=fuse,
                     trust_python_layers=trust_python_layers).to(device)
    finally:
        if token is not None:
            READS_BATCHES.reset(token)
    weights_by_top: dict[str, float] = {}
    for layer in net.layer:
        for top, w in zip(layer.top, top_loss_weights(layer)):
            if w:
                weights_by_top[top] = w
    data_feed = open_feed(net, phase=net.state.phase, where=model,
                          required=feed_required) if feed else None
    return LoadedNet(gm, net, device, data_feed, weights_by_top)
