"""`caffe-fx time --model M`: Caffe's `caffe time` benchmark of a net (tools/caffe.cpp time()).

One clean forward and backward, then N timed iterations, printing the lines `caffe time`
prints: "Iteration: i forward-backward time: X ms.", per layer (Caffe's layers, Splits
included, right-aligned to 10) "<layer>\\tforward: X ms." and "\\tbackward: X ms.", and
the averages.  Forward times come from an fx.Interpreter that times the nodes of each
layer; backward times from hooks on the autograd functions each layer's nodes created.
Inputs hold zeros, as Caffe's Input blobs do; data layers read their batches through
caffe_fx.data (the batch time is charged to the first data layer's forward).  Deliberate
difference (README): a net without a loss output is timed forward only.
"""
from __future__ import annotations

import argparse
import time as _time
from collections import defaultdict
from typing import Any

from ._common import add_caffe_proto, add_debug, add_trust_python_layers
from ._tool import (
    add_gpu_option,
    add_phase_option,
    caffe_option,
    device_for,
    g,
    load_net,
    parse_gpus,
    stages,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "time", help="benchmark a net's forward and backward, per layer (as `caffe time`)",
        description="Time a net's forward and backward passes, in total and per Caffe "
                    "layer, printing what `caffe time` prints.")
    caffe_option(p, "model", required=True, metavar="NET.prototxt",
                 help="the net definition")
    caffe_option(p, "weights", default=None, metavar="WEIGHTS",
                 help="a .caffemodel (default: Caffe's fillers)")
    caffe_option(p, "iterations", type=int, default=50,
                 help="timed iterations (default 50, as caffe's)")
    add_phase_option(p, "train")
    add_gpu_option(p, many=False)
    add_caffe_proto(p)
    add_trust_python_layers(p)
    add_debug(p)
    p.set_defaults(run=run)


class _LayerTimes:
    """Per-layer forward and backward seconds for one GraphModule; every fx node is
    charged to its Caffe layer (getitem/contiguous nodes to the layer they read)."""

    def __init__(self, gm: Any, net: Any, sync: Any) -> None:
        from torch import fx

        producer = {top: layer.name for layer in net.layer for top in layer.top}
        self.layer_of: dict[str, str] = {}
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                blob = node.meta.get("caffe_blob", node.target)
                self.layer_of[node.name] = producer.get(blob, blob)
            elif "caffe_layer" in node.meta:
                self.layer_of[node.name] = node.meta["caffe_layer"]
            elif node.op != "output":
                first = next(iter(node.all_input_nodes), None)
                if first is not None and first.name in self.layer_of:
                    self.layer_of[node.name] = self.layer_of[first.name]
        self.forward: dict[str, float] = defaultdict(float)
        self.backward: dict[str, float] = defaultdict(float)
        self._sync = sync
        self._owner: dict[Any, str] = {}
        times = self

        class Timed(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                layer = times.layer_of.get(n.name)
                start = _time.perf_counter()
                out = super().run_node(n)
                if layer is None:
                    return out
                sync()
                times.forward[layer] += _time.perf_counter() - start
                times._claim(out, layer)  # outside the timed span
                return out

        self._interpreter = Timed(gm)
        self._placeholders = [n.meta.get("caffe_blob", n.target) for n in gm.graph.nodes
                              if n.op == "placeholder"]

    def run(self, inputs: dict[str, Any]) -> Any:
        self._owner = {}
        return self._interpreter.run(*(inputs[b] for b in self._placeholders))

    def _claim(self, out: Any, layer: str) -> None:
        """The autograd functions made by this node (before in-place writers rebase the
        tensor's grad_fn) belong to `layer`; those of earlier nodes are already owned."""
        import torch

        tensors = [out] if isinstance(out, torch.Tensor) else \
            [t for t in (out if isinstance(out, (tuple, list)) else ()) if isinstance(t, torch.Tensor)]
        stack: list[Any] = [t.grad_fn for t in tensors if t.grad_fn is not None]
        while stack:
            fn = stack.pop()
            if fn is None or fn in self._owner:
                continue
            self._owner[fn] = layer
            stack.extend(f for f, _ in fn.next_functions)

    def run_backward(self, loss: Any) -> None:
        """loss.backward() with each autograd function's time added to its layer."""
        handles = []
        started: dict[Any, float] = {}

        def pre(fn: Any) -> Any:
            def hook(*_: Any) -> None:
                self._sync()
                started[fn] = _time.perf_counter()
            return hook

        def post(fn: Any, layer: str) -> Any:
            def hook(*_: Any) -> None:
                self._sync()
                if fn in started:
                    self.backward[layer] += _time.perf_counter() - started.pop(fn)
            return hook

        for fn, layer in self._owner.items():
            handles.append(fn.register_prehook(pre(fn)))
            handles.append(fn.register_hook(post(fn, layer)))
        try:
            loss.backward()
        finally:
            for h in handles:
                h.remove()
            self._owner = {}


def run(args: argparse.Namespace) -> int:
    import torch

    if args.iterations < 1:
        from ..errors import InputError
        raise InputError(f"-iterations {args.iterations}: must be at least 1")
    gpus = parse_gpus(args.gpu)
    device = device_for(gpus[:1])
    print("Use GPU with device ID", gpus[0]) if gpus else print("Use CPU.")
    loaded = load_net(args.model, args.weights, phase=args.phase, level=args.level,
                      stage=stages(args), device=device, feed=True, feed_required=False,
                      caffe_proto=args.caffe_proto, trust_python_layers=args.trust_python_layers,
                      fuse=False)  # one node per layer: each layer's own time, as Caffe's
    try:
        _benchmark(loaded, args.iterations, device, torch)
    finally:
        loaded.close()
    return 0


def _benchmark(loaded: Any, iterations: int, device: Any, torch: Any) -> None:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    gm, net = loaded.gm, loaded.net
    times = _LayerTimes(gm, net, sync)
    first_data = next((x.name for x in net.layer if loaded.feed is not None
                       and set(x.top) & set(loaded.feed.tops)), None)

    def one() -> tuple[Any, float, float]:
        t0 = _time.perf_counter()
        inputs = loaded.inputs()
        sync()
        feed_s = _time.perf_counter() - t0
        t1 = _time.perf_counter()
        out = times.run(inputs)
        loss = loaded.loss(out)
        sync()
        forward_s = _time.perf_counter() - t1 + feed_s
        if first_data is not None:
            times.forward[first_data] += feed_s
        t2 = _time.perf_counter()
        if loss is not None and loss.requires_grad:
            times.run_backward(loss)
        sync()
        return loss, forward_s, _time.perf_counter() - t2

    print("Performing Forward")
    loss, _, _ = one()
    times.forward.clear()
    times.backward.clear()
    gm.zero_grad(set_to_none=True)
    print(f"Initial loss: {g(float(loss.detach())) if loss is not None else 0}")
    print("Performing Backward")
    if loss is None:
        print("(no loss output: the backward pass is not timed)")
    print("*** Benchmark begins ***")
    print(f"Testing for {iterations} iterations.")
    total_start = _time.perf_counter()
    forward_s = backward_s = 0.0
    for j in range(iterations):
        iter_start = _time.perf_counter()
        _, f, b = one()
        forward_s += f
        backward_s += b
        gm.zero_grad(set_to_none=True)
        print(f"Iteration: {j + 1} forward-backward time: "
              f"{g((_time.perf_counter() - iter_start) * 1e3)} ms.")
    total_ms = (_time.perf_counter() - total_start) * 1e3
    print("Average time per layer: ")
    for layer in net.layer:
        name = layer.name.rjust(10)
        print(f"{name}\tforward: {g(times.forward.get(layer.name, 0.0) * 1e3 / iterations)} ms.")
        print(f"{name}\tbackward: {g(times.backward.get(layer.name, 0.0) * 1e3 / iterations)} ms.")
    print(f"Average Forward pass: {g(forward_s * 1e3 / iterations)} ms.")
    print(f"Average Backward pass: {g(backward_s * 1e3 / iterations)} ms.")
    print(f"Average Forward-Backward: {g(total_ms / iterations)} ms.")
    print(f"Total Time: {g(total_ms)} ms.")
    print("*** Benchmark ends ***")
