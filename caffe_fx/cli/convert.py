"""`caffe-fx convert`: weights from one format to another, caffemodels both ways.

MODEL.caffemodel -> .pt, .h5, .npz, a folder of .npy, .json, .safetensors (keys
`<layer>.<index>`, or with --prototxt the state_dict keys of caffe_fx.compile(NET)), and
any of those -> .caffemodel / .caffemodel.h5 that real Caffe loads (Net::ToProto and
Net::ToHDF5 in src/caffe/net.cpp).  The work is done by caffe_fx/weights_io.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._common import add_caffe_proto

EPILOG = """\
output format (from OUT):
  .pt/.pth          a dict of tensors (torch.load(OUT, weights_only=True))
  .h5/.hdf5/.caffemodel.h5
                    Caffe's HDF5 layout /data/<layer>/<i> (Caffe loads it back)
  .caffemodel       a binary NetParameter that Caffe loads
  .npz              numpy.load(OUT)
  .json             {"format": "caffe_fx.weights", "tensors": {key: {"shape", "data"}}}
  .safetensors      needs `pip install safetensors`
  a folder          OUT ending in '/', an existing folder, or OUT without a suffix:
                    one <key>.npy per blob ('/' in a key written as %2F)

keys: <layer>.<blob index> (conv1.0, conv1.1) with the file's own shapes; with
--prototxt NET, the state_dict keys of caffe_fx.compile(NET) (conv1.weight) in the
net's shapes, so gm.load_state_dict(torch.load(OUT, weights_only=True)) just works.
Any of these formats converts back: caffe-fx convert w.pt -o w.caffemodel --prototxt NET
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert", help="convert weights between caffemodel and .pt/.h5/.npz/.npy/.json/"
                        ".safetensors",
        description="Convert Caffe weights to other formats, or back to a caffemodel.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL",
                   help="weights to read: .caffemodel (binary or HDF5), or any output format")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="file or folder to write (default: MODEL.pt for a caffemodel, "
                        "MODEL with its suffix replaced by .caffemodel otherwise)")
    p.add_argument("--prototxt", metavar="NET",
                   help="the net: keys become compile(NET)'s state_dict names, shapes the "
                        "net's; written caffemodels hold the whole net")
    p.add_argument("--layers", metavar="L1,L2",
                   help="only these layers (comma-separated names or shell globs: 'conv*')")
    p.add_argument("--phase", choices=("train", "test"), default="test",
                   help="the phase used to build NET (default: test)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_caffe_proto(p)
    p.set_defaults(run=run)


def default_output(model: str) -> str:
    from .. import weights_io as wio

    if wio.input_format(model) in wio.LAYER_FORMATS:
        return model.rstrip("/" + os.sep) + ".pt"
    p = Path(model.rstrip("/" + os.sep))
    name = p.name
    for suffix in (".pt", ".pth", ".npz", ".json", ".safetensors"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return str(p.with_name(name + ".caffemodel"))


def run(args: argparse.Namespace) -> int:
    from .. import weights_io as wio  # torch: not needed for --help

    model = args.model
    if args.caffe_proto and not args.prototxt:
        from ..errors import InputError

        raise InputError(f"--caffe-proto {args.caffe_proto}: the schema reads --prototxt, "
                         "which is not given (a caffemodel's blobs need no schema)")
    wio.input_format(model)  # a missing input is named before anything else
    out = args.output or default_output(model)
    fmt = wio.output_format(out)
    if fmt != "npy":
        wio.check_writable(out, args.force)  # refuse before the (long) read
    net = args.prototxt
    if net and args.caffe_proto:  # read once with the fork's schema, by name
        from ..frontend.read import read_net

        net = read_net(args.prototxt, args.caffe_proto)
    layout = wio.net_layout(net, args.phase) if net else None
    blobs = wio.read_blobs(model, layout)
    if args.layers:
        blobs = wio.select_layers(blobs, args.layers.split(","), model)
    total = sum(b.array.nbytes for bl in blobs.values() for b in bl)
    progress = wio.Progress(total, f"writing {out}")
    count, skipped = wio.write_blobs(out, blobs, fmt, layout=layout, prototxt=net,
                                     force=args.force, progress=progress)
    if skipped:
        print(f"caffe-fx convert: note: skipped {len(skipped)} layer(s) that "
              f"{args.prototxt} lacks: {', '.join(skipped)}", file=sys.stderr)
    if layout is not None:
        missing = [n for n in layout.layers if n not in blobs]
        if missing and not args.layers:
            print(f"caffe-fx convert: note: {len(missing)} layer(s) of {args.prototxt} have "
                  f"no weights in {model}: {', '.join(missing)}", file=sys.stderr)
    print(f"wrote {out} ({fmt}, {count} arrays, {total / 2**20:.1f} MiB)")
    return 0
