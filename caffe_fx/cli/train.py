"""`caffe-fx train --solver S`: Caffe's `caffe train` (tools/caffe.cpp train()) over caffe_fx.Solver.

`-weights a,b` to fine-tune or `-snapshot S.solverstate` to resume (not both, as Caffe
refuses), `-gpu 0,1|all` or `--procs N` for one process per GPU (NCCL) or N CPU processes
(gloo) with Caffe's multi-GPU semantics (caffe_fx/distributed.py): each reads its own
records, gradients are averaged, rank 0 alone logs, tests and snapshots.  Started by
`torchrun ... -m caffe_fx train ...`, each process joins the group from the environment.
Caffe's log lines go to stdout always; on a terminal a progress line (iteration, loss, lr,
it/s) is kept on stderr.  `-iterations N` stops after N iterations (Caffe's tool ignores
it for train).  `-sigint_effect` / `-sighup_effect`: stop, snapshot or none.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from ._common import add_debug, add_trust_python_layers
from ._tool import add_gpu_option, caffe_option, parse_gpus

_EFFECTS = ("stop", "snapshot", "none")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a net from a solver.prototxt (as `caffe train`)",
        description="Train a Caffe solver.prototxt, printing Caffe's log lines; on several "
                    "processes (--procs, or -gpu 0,1) as Caffe's multi-GPU training.")
    caffe_option(p, "solver", required=True, metavar="SOLVER.prototxt",
                 help="the solver definition")
    caffe_option(p, "weights", default="", metavar="W1[,W2...]",
                 help="caffemodels to initialise from (fine-tuning), separated by ','")
    caffe_option(p, "snapshot", default="", metavar="S.solverstate",
                 help="a solver state to resume from")
    add_gpu_option(p, many=True)
    p.add_argument("--procs", type=int, default=1, metavar="N",
                   help="train on N CPU processes (gloo), gradients averaged; the "
                        "effective batch is N times the net's")
    caffe_option(p, "iterations", type=int, default=None, metavar="N",
                 help="stop after N iterations (default: the solver's max_iter)")
    caffe_option(p, "level", type=int, default=0, help="the train NetState level")
    caffe_option(p, "stage", default="", metavar="STAGES",
                 help="train NetState stages, separated by ','")
    caffe_option(p, "sigint_effect", choices=_EFFECTS, default="stop",
                 help="on SIGINT (Ctrl-C): stop (after a snapshot), snapshot, or none")
    caffe_option(p, "sighup_effect", choices=_EFFECTS, default="snapshot",
                 help="on SIGHUP: stop, snapshot (default), or none")
    add_trust_python_layers(p)
    add_debug(p)
    p.set_defaults(run=run, _parser=p)


def _usage(args: argparse.Namespace) -> None:
    p = args._parser
    if args.weights and args.snapshot:
        p.error("give -snapshot to resume training or -weights to fine-tune, but not both")
    if args.procs < 1:
        p.error(f"--procs {args.procs}: must be at least 1")
    if args.iterations is not None and args.iterations < 0:
        p.error(f"-iterations {args.iterations}: must be at least 0")


def run(args: argparse.Namespace) -> int:
    import os

    from .. import distributed

    _usage(args)
    gpus = parse_gpus(args.gpu)
    if gpus and args.procs > 1 and args.procs != len(gpus):
        args._parser.error(f"--procs {args.procs} with -gpu {args.gpu}: one process per "
                           f"GPU, so --procs must be {len(gpus)} or left out")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun
        import torch

        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{gpus[local % len(gpus)]}") if gpus else None
        if device is not None:
            torch.cuda.set_device(device)
        distributed.init_from_env(device)
        _train(distributed.rank(), distributed.world_size(), device, args)
        return 0
    world = len(gpus) if len(gpus) > 1 else args.procs
    if world == 1:
        import torch

        _train(0, 1, torch.device(f"cuda:{gpus[0]}") if gpus else None, args)
        return 0
    print(f"Using GPUs {', '.join(map(str, gpus))}" if gpus else
          f"Use CPU: {world} processes (gloo)", flush=True)
    worker_args = argparse.Namespace(**{k: v for k, v in vars(args).items()
                                        if k not in ("run", "_parser")})
    codes = distributed.launch(_worker, world, devices=gpus or None, args=(worker_args,))
    if codes[0] == 0 and any(codes[1:]):
        # the root finished (or stopped on a signal, snapshot written); a rank blocked in
        # a collective the root no longer joins ends with an error: the run is the root's
        print(f"caffe-fx train: rank 0 finished; the other processes exited with {codes[1:]}",
              file=sys.stderr)
    return codes[0] if codes[0] in (0, 1, 130) else 1


def _worker(rank: int, world: int, device: Any, args: argparse.Namespace) -> None:
    """One spawned process: ends with the CLI's exit code (0, 1 for a caffe_fx error or a
    failure, 130 interrupted); rank 0 prints the error line, others a short one."""
    from ..errors import CaffeFxError

    try:
        _train(rank, world, device, args)
    except CaffeFxError as e:
        if getattr(args, "debug", False):
            raise
        if rank == 0:
            print(f"caffe-fx train: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if rank == 0 or getattr(args, "debug", False):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"caffe-fx train: rank {rank}: {first}", file=sys.stderr, flush=True)
        sys.exit(1)


class _Progress:
    """The terminal's progress line: iteration, smoothed loss, lr, iterations per second."""

    def __init__(self, solver: Any, stream: Any) -> None:
        self.solver, self.stream = solver, stream
        self.start, self.start_iter = time.perf_counter(), solver.iter
        self.shown = False

    def update(self) -> None:
        s = self.solver
        lapse = time.perf_counter() - self.start
        rate = (s.iter - self.start_iter) / lapse if lapse > 0 else 0.0
        self.stream.write(f"\r\033[Kiter {s.iter}/{s.param.max_iter}  loss {s.smoothed_loss:.6g}"
                          f"  lr {s.lr:.6g}  {rate:.2f} it/s")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


class _LogHandler(logging.Handler):
    """Caffe's lines, bare, on stdout; the progress line is cleared before each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.progress: _Progress | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.progress is not None:
            self.progress.clear()
        print(record.getMessage(), flush=True)


def _solver_param(args: argparse.Namespace) -> Any:
    """The solver file, or its SolverParameter with caffe.cpp's changes (train_state's
    level and stages) and -iterations applied."""
    if not (args.level or args.stage or args.iterations is not None):
        return args.solver
    from ..optim import read_solver

    param = read_solver(args.solver)
    param.train_state.level = args.level
    param.train_state.stage.extend(s for s in args.stage.split(",") if s)
    if args.iterations is not None:
        param.max_iter = args.iterations
    return param


def _train(rank: int, world: int, device: Any, args: argparse.Namespace) -> None:
    from .. import distributed
    from ..solver import Solver

    log = logging.getLogger("caffe_fx.solver")
    handler = _LogHandler()
    if rank == 0:
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    else:
        log.setLevel(logging.WARNING)
    try:
        if rank == 0 and world == 1:
            # tools/caffe.cpp: without -gpu, the solver file's solver_mode GPU (device_id)
            # picks the device; "Use CPU." only when it is the CPU.
            from ..optim import read_solver
            from ..solver import resolve_device
            param = _solver_param(args)
            used = resolve_device(device, read_solver(param) if isinstance(param, str)
                                  else param, args.solver)
            print("Use CPU." if used.type == "cpu" else f"Using GPUs {used.index}",
                  flush=True)
        weights = [w for w in args.weights.split(",") if w] or None
        # Only the root acts on signals, as only Caffe's root solver has the action
        # function; the others would snapshot over its files or stop out of step.
        root = rank == 0
        solver = Solver(_solver_param(args), weights=weights,
                        device=device if device is not None or world > 1 else None,
                        on_sigint=args.sigint_effect if root else "none",
                        on_sighup=args.sighup_effect if root else "none",
                        trust_python_layers=args.trust_python_layers)
        try:
            if args.snapshot:
                if rank == 0:
                    print(f"Resuming from {args.snapshot}", flush=True)
                solver.restore(args.snapshot)
            if world > 1:  # NCCL::Broadcast: all start from the root's weights
                gm = solver.net
                distributed.broadcast_parameters([*gm.parameters(), *gm.buffers()])
            if rank == 0 and sys.stderr.isatty():
                handler.progress = _Progress(solver, sys.stderr)
                solver.add_callback(on_start=handler.progress.update)
            if rank == 0:
                print("Starting Optimization", flush=True)
            solver.solve()
            if handler.progress is not None:
                handler.progress.clear()
            if rank == 0:
                print("Optimization Done.", flush=True)
        finally:
            solver.close()
    finally:
        log.removeHandler(handler)
        if rank == 0:
            log.propagate = True
