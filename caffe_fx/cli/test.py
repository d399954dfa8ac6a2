"""`caffe-fx test --model M --weights W`: Caffe's `caffe test` scoring (tools/caffe.cpp test()).

The TEST-phase net, weights copied by layer name, N forwards on the batches its data
layers read (caffe_fx.data, in Caffe's order); prints each output element per batch
("Batch i, accuracy = v"), the mean loss ("Loss: X") and each output's mean, loss
outputs with their weight ("loss = X (* 1 = X loss)").  Sums are float32, as Caffe's.
"""
from __future__ import annotations

import argparse
from typing import Any

from ._common import add_caffe_proto, add_debug, add_trust_python_layers
from ._tool import add_gpu_option, caffe_option, device_for, g, load_net, parse_gpus, stages


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "test", help="score a trained net on its TEST-phase data (as `caffe test`)",
        description="Run a net's TEST phase for N batches and print every output per "
                    "batch and its mean, as `caffe test` does.")
    caffe_option(p, "model", required=True, metavar="NET.prototxt",
                 help="the net definition (its TEST phase is used)")
    caffe_option(p, "weights", required=True, metavar="WEIGHTS",
                 help="the trained .caffemodel to score")
    caffe_option(p, "iterations", type=int, default=50,
                 help="batches to score (default 50, as caffe's)")
    caffe_option(p, "level", type=int, default=0, help="the NetState level (default 0)")
    caffe_option(p, "stage", default="", metavar="STAGES",
                 help="NetState stages, separated by ','")
    add_gpu_option(p, many=False)
    add_caffe_proto(p)
    add_trust_python_layers(p)
    add_debug(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..errors import InputError

    if args.iterations < 1:
        raise InputError(f"-iterations {args.iterations}: must be at least 1")
    gpus = parse_gpus(args.gpu)
    print(f"Use GPU with device ID {gpus[0]}" if gpus else "Use CPU.")
    loaded = load_net(args.model, args.weights, phase="test", level=args.level,
                      stage=stages(args), device=device_for(gpus[:1]), feed=True,
                      feed_required=True, caffe_proto=args.caffe_proto,
                      trust_python_layers=args.trust_python_layers)
    print(f"Running for {args.iterations} iterations.")
    names = loaded.outputs
    scores: list[Any] = []  # one float32 sum per output element, Caffe's test_score
    owners: list[str] = []
    loss = np.float32(0)
    try:
        with torch.no_grad():
            for i in range(args.iterations):
                out = loaded.forward(loaded.inputs())
                iter_loss = loaded.loss(out)
                loss += np.float32(0 if iter_loss is None else float(iter_loss))
                idx = 0
                for name in names:
                    for score in out[name].detach().reshape(-1).cpu().numpy().astype(np.float32):
                        if i == 0:
                            scores.append(score)
                            owners.append(name)
                        else:
                            scores[idx] += score
                        idx += 1
                        print(f"Batch {i}, {name} = {g(float(score))}")
    finally:
        loaded.close()
    loss /= np.float32(args.iterations)
    print(f"Loss: {g(float(loss))}")
    for name, total in zip(owners, scores):
        mean = np.float32(total / np.float32(args.iterations))
        weight = np.float32(loaded.loss_weights.get(name, 0.0))
        extra = f" (* {g(float(weight))} = {g(float(weight * mean))} loss)" if weight else ""
        print(f"{name} = {g(float(mean))}{extra}")
    return 0
