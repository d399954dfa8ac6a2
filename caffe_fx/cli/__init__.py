"""The `caffe-fx` command line (also `python -m caffe_fx`).

One module per subcommand in this package, each with `add_parser(subparsers)` and
`run(args) -> int`.  Exit codes scripts can rely on: 0 success, 1 a caffe_fx error
(bad net, bad weights, refused overwrite; one message on stderr, traceback with --debug),
2 bad command-line usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from ..errors import CALLER, CaffeFxError, CaffeFxWarning

# Subcommand name -> module in this package.  Modules are imported lazily so that
# `caffe-fx --help` stays fast.
COMMANDS = {
    "convert": "convert",
    "info": "info",
    "export": "export",
    "draw": "draw",
    "train": "train",
    "test": "test",
    "time": "time",
}

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caffe-fx",
        description="Caffe models to PyTorch: convert weights, inspect, export and draw nets, "
                    "and train, test and time them as Caffe's `caffe` tool does.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{module}":
                raise
            continue  # subcommand not built yet
        mod.add_parser(sub)
    return parser


def _warning_printer(command: str, default: Callable[..., None]) -> Callable[..., None]:
    """caffe_fx's warnings as the errors are: `caffe-fx CMD: warning: ...` on stderr,
    without Python's file and source line (--debug keeps them); others as Python prints
    them."""
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        if issubclass(category, CaffeFxWarning):
            print(f"caffe-fx {command}: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `caffe-fx MODEL.caffemodel [...]` is short for `caffe-fx convert MODEL.caffemodel`.
    first = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser()
    if first is not None and first not in COMMANDS and "-h" not in args_list \
            and "--help" not in args_list:
        if not os.path.exists(first) and not {".", "/", os.sep} & set(first):
            # A bare word that names no file is a mistyped command, not a model.
            close = difflib.get_close_matches(first, list(COMMANDS), n=1)
            parser.error(f"'{first}' is not a command"
                         + (f" (did you mean '{close[0]}'?)" if close else "")
                         + f"; commands: {', '.join(COMMANDS)}; a weights file converts "
                         "with caffe-fx MODEL.caffemodel")
        args_list.insert(args_list.index(first), "convert")
    args = parser.parse_args(args_list)
    token = CALLER.set("cli")  # advice in messages names this command line's flags
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _warning_printer(args.command, warnings.showwarning)
            return int(args.run(args) or 0)
    except CaffeFxError as e:
        if args.debug:
            raise
        print(f"caffe-fx {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("caffe-fx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        CALLER.reset(token)
