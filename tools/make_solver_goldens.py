"""Regenerates tests/golden/solvers/: real Caffe's training runs for caffe_fx.optim.

For each case (every solver type, every lr_policy, L1/L2, iter_size 2, clip_gradients,
param groups through lr_mult 0 / decay_mult 2 / a shared param / bias lr_mult 2, and
BatchNorm, whose statistics are learnable blobs of lr_mult 0 with AdaGrad history), runs
`caffe-oracle solve CASE.solver.prototxt --iters 12` on two tiny nets with Input layers
fed from inputs.npz; keeps the per-iteration loss and lr, the final params (CASE.npz),
the starting weights (<net>_w0.caffemodel) and the solverstates Caffe snapshots at
iterations 6 and 12 (binary; one case HDF5).  For the RESUME cases it also proves that
real Caffe resumes from OUR solverstate: caffe_fx trains 6 iterations and writes
CASE_ours_iter_6.{solverstate,caffemodel}, real pycaffe restores them and steps 6 more
(CASE_resumed.npz).  Needs root and the chroot (../shared/caffe-oracle).

    python tools/make_solver_goldens.py [--caffe-root /opt/caffe-ref]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np

from tools._chroot import chroot_workdir, replace_folder, run_in_chroot

GOLDEN = ROOT / "tests" / "golden" / "solvers"
ORACLE = ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"
ITERS = 12

_FILL = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 }'
_INPUT = '''layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 4 dim: 3 dim: 5 dim: 5 } shape { dim: 4 } } }
'''
NETS = {
    "basic": 'name: "basic"\n' + _INPUT + f'''\
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 {_FILL} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param {{ num_output: 3 {_FILL} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
''',
    "groups": 'name: "groups"\n' + _INPUT + f'''\
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param {{ lr_mult: 0 }} param {{ lr_mult: 2 decay_mult: 0 }}
  convolution_param {{ num_output: 4 kernel_size: 3 {_FILL} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "ipa" type: "InnerProduct" bottom: "conv1" top: "ipa"
  param {{ name: "ws" decay_mult: 2 }} param {{ lr_mult: 1 }}
  inner_product_param {{ num_output: 3 {_FILL} }} }}
layer {{ name: "ipb" type: "InnerProduct" bottom: "conv1" top: "ipb"
  param {{ name: "ws" }} param {{ lr_mult: 1 decay_mult: 2 }}
  inner_product_param {{ num_output: 3 {_FILL} }} }}
layer {{ name: "sum" type: "Eltwise" bottom: "ipa" bottom: "ipb" top: "sum" }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss" }}
''',
    "bn": 'name: "bn"\n' + _INPUT + f'''\
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 bias_term: false
    weight_filler {{ type: "gaussian" std: 0.3 }} }} }}
layer {{ name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }}
layer {{ name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
  scale_param {{ bias_term: true }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1"
  inner_product_param {{ num_output: 3 {_FILL} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
''',
}
# case -> (net, solver fields)
CASES = {
    "sgd_fixed_l2": ("basic", ('type: "SGD" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" '
                     'weight_decay: 0.01')),
    "sgd_step_groups": ("groups", ('type: "SGD" base_lr: 0.1 momentum: 0.9 lr_policy: "step" '
                        'gamma: 0.5 stepsize: 4 weight_decay: 0.01')),
    "nesterov_exp_l1": ("basic", ('type: "Nesterov" base_lr: 0.1 momentum: 0.9 lr_policy: "exp" '
                        'gamma: 0.9 weight_decay: 0.01 regularization_type: "L1"')),
    "adagrad_inv_groups": ("groups", ('type: "AdaGrad" base_lr: 0.1 lr_policy: "inv" gamma: 0.1 '
                           'power: 0.75 weight_decay: 0.005')),
    "rmsprop_multistep": ("basic", ('type: "RMSProp" base_lr: 0.01 rms_decay: 0.98 delta: 1e-6 '
                          'lr_policy: "multistep" gamma: 0.5 stepvalue: 3 stepvalue: 6 '
                          'stepvalue: 9 weight_decay: 0.001')),
    "adadelta_poly_groups": ("groups", ('type: "AdaDelta" base_lr: 1.0 momentum: 0.95 delta: 1e-6 '
                             'lr_policy: "poly" power: 2 weight_decay: 0.01')),
    "adam_sigmoid_groups": ("groups", ('type: "Adam" base_lr: 0.01 momentum: 0.9 momentum2: 0.999 '
                            'delta: 1e-8 lr_policy: "sigmoid" gamma: 0.5 stepsize: 6 '
                            'weight_decay: 0.01')),
    "adagrad_batchnorm": ("bn", ('type: "AdaGrad" base_lr: 0.05 lr_policy: "fixed" '
                                 'weight_decay: 0.01')),
    "sgd_iter_size2": ("basic", ('type: "SGD" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" '
                       'iter_size: 2 weight_decay: 0.01')),
    "sgd_clip": ("basic", ('type: "SGD" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" '
                 'clip_gradients: 0.1')),
    # SGD where torch's fused kernel does not apply (optim/solvers.py SGD._apply): L1, and
    # no momentum.
    "sgd_step_l1_groups": ("groups", ('type: "SGD" base_lr: 0.1 momentum: 0.9 lr_policy: '
                           '"step" gamma: 0.5 stepsize: 4 weight_decay: 0.01 '
                           'regularization_type: "L1"')),
    "sgd_no_momentum": ("basic", ('type: "SGD" base_lr: 0.1 lr_policy: "fixed" '
                        'weight_decay: 0.01')),
    "adam_hdf5_l1": ("basic", ('type: "Adam" base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" '
                     'weight_decay: 0.01 regularization_type: "L1" snapshot_format: HDF5')),
}
RESUME = ("rmsprop_multistep", "adadelta_poly_groups", "adam_sigmoid_groups", "adam_hdf5_l1")

# Runs inside the chroot: restore OUR iter-6 solverstate, step 6 more as cmd_solve does.
RESUMER = '''\
import os, sys
import numpy as np
import caffe
os.chdir(sys.argv[1])
case = sys.argv[2]
caffe.set_mode_cpu()
solver = caffe.get_solver(case + ".solver.prototxt")
solver.restore(sys.argv[3])
assert solver.iter == 6, solver.iter
arrays = dict(np.load("inputs.npz"))
for it in range(6, ITERS):
    for key, value in arrays.items():
        if key.endswith("@%d" % it):
            solver.net.blobs[key.split("@")[0]].data[...] = value
    solver.step(1)
out = {}
for name, blobs in solver.net.params.items():
    for i, b in enumerate(blobs):
        out["param/%s/%d" % (name, i)] = b.data.copy()
np.savez(case + "_resumed.npz", **out)
'''.replace("ITERS", str(ITERS))


def solver_text(case: str) -> str:
    net, fields = CASES[case]
    return (f'net: "{net}.prototxt"\n{fields}\nmax_iter: {ITERS}\ndisplay: 0\n'
            f'snapshot: 6\nsnapshot_prefix: "{case}"\n').replace(" type:", "\ntype:")


def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    out = {}
    for k in range(ITERS):
        out[f"data@{k}"] = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
        out[f"label@{k}"] = rng.integers(0, 3, 4).astype(np.float32)
    return out


def ours_for_caffe(work: Path, case: str) -> str:
    """caffe_fx trains iterations 0..5 and snapshots as Caffe would (HDF5 where the case
    asks for it); returns the solverstate's name."""
    sys.path.insert(0, str(ROOT))
    from caffe_fx import save_caffemodel
    from caffe_fx.optim import SolverState, write_solverstate
    from tests.optim import _train

    gm, opt, sched = _train.start(case, golden=work)
    _train.run(gm, opt, sched, dict(np.load(work / "inputs.npz")), 0, 6)
    model = f"{case}_ours_iter_6.caffemodel"
    save_caffemodel(work / model, gm, work / f"{CASES[case][0]}.prototxt")
    hdf5 = "HDF5" in CASES[case][1]
    name = f"{case}_ours_iter_6.solverstate" + (".h5" if hdf5 else "")
    write_solverstate(work / name, SolverState(
        iter=opt.iteration, current_step=sched.current_step, learned_net=model,
        history=[h.numpy() for h in opt.history()]), hdf5=hdf5)
    return name


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caffe-root", type=Path, default=Path("/opt/caffe-ref"))
    args = ap.parse_args(argv)
    keep: list[str] = ["inputs.npz"]
    with chroot_workdir(args.caffe_root, "solvers_") as (work, inside):
        np.savez(work / "inputs.npz", **make_inputs())
        for net, text in NETS.items():
            (work / f"{net}.prototxt").write_text(text)
            keep.append(f"{net}.prototxt")
        for case, (net, _) in CASES.items():
            (work / f"{case}.solver.prototxt").write_text(solver_text(case))
            w0 = work / f"{net}_w0.caffemodel"
            cmd = [str(ORACLE), "solve", f"{case}.solver.prototxt", "--iters", str(ITERS),
                   "--inputs", "inputs.npz", "--out", f"{case}.npz", "--seed", "3"]
            cmd += ["--weights", w0.name] if w0.exists() else ["--save-init", w0.name]
            subprocess.run(cmd, cwd=work, check=True)
            h5 = ".h5" if "HDF5" in CASES[case][1] else ""
            keep += [f"{case}.solver.prototxt", f"{case}.npz",
                     f"{case}_iter_6.solverstate{h5}", f"{case}_iter_12.solverstate{h5}"]
            if w0.name not in keep:
                keep.append(w0.name)
            if case in RESUME:
                keep.append(f"{case}_iter_6.caffemodel{h5}")
        (work / "resume.py").write_text(RESUMER)
        for case in RESUME:
            state = ours_for_caffe(work, case)
            run_in_chroot(args.caffe_root, f"{inside}/resume.py", [inside, case, state])
            keep += [state, f"{case}_ours_iter_6.caffemodel",
                     f"{case}_resumed.npz"]
        replace_folder(GOLDEN, work, keep)
    total = sum(p.stat().st_size for p in GOLDEN.iterdir())
    print(f"wrote {len(keep)} files, {total / 1024:.0f} KiB, to {GOLDEN}")
    shutil.rmtree(ROOT / "tests" / "golden" / "solvers.new", ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
