"""BVLC's python/train.py (multi-GPU training through pycaffe's NCCL) as it runs on CPU
processes: the same calls in the same order, with set_mode_cpu() for set_mode_gpu() and
the weights copied in (as `caffe train -weights`); each rank saves its net at the end.

usage: python -m tests.distributed.pycaffe_train SOLVER WEIGHTS NPROCS [--timing]
"""
from __future__ import annotations

import sys
from multiprocessing import Process

import caffe_fx.pycaffe as caffe


def time(solver, nccl):  # python/train.py's, as written
    fprop = []
    bprop = []
    total = caffe.Timer()
    allrd = caffe.Timer()
    for _ in range(len(solver.net.layers)):
        fprop.append(caffe.Timer())
        bprop.append(caffe.Timer())
    display = solver.param.display

    def show_time():
        if solver.iter % display == 0:
            s = '\n'
            for i in range(len(solver.net.layers)):
                s += 'forw %3d %8s ' % (i, solver.net._layer_names[i])
                s += ': %.2f\n' % fprop[i].ms
            for i in range(len(solver.net.layers) - 1, -1, -1):
                s += 'back %3d %8s ' % (i, solver.net._layer_names[i])
                s += ': %.2f\n' % bprop[i].ms
            s += 'solver total: %.2f\n' % total.ms
            s += 'allreduce: %.2f\n' % allrd.ms
            caffe.log(s)

    solver.net.before_forward(lambda layer: fprop[layer].start())
    solver.net.after_forward(lambda layer: fprop[layer].stop())
    solver.net.before_backward(lambda layer: bprop[layer].start())
    solver.net.after_backward(lambda layer: bprop[layer].stop())
    solver.add_callback(lambda: total.start(), lambda: (total.stop(), allrd.start()))
    solver.add_callback(nccl)
    solver.add_callback(lambda: '', lambda: (allrd.stop(), show_time()))


def solve(proto, weights, nprocs, timing, uid, rank):
    caffe.set_mode_cpu()
    caffe.set_solver_count(nprocs)
    caffe.set_solver_rank(rank)
    caffe.set_multiprocess(True)

    solver = caffe.SGDSolver(proto)
    solver.net.copy_from(weights)

    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()

    if timing and rank == 0:
        caffe.init_log()
        time(solver, nccl)
    else:
        solver.add_callback(nccl)

    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    solver.step(solver.param.max_iter)
    solver.net.save(f"rank{rank}.caffemodel")


if __name__ == "__main__":
    proto, weights, nprocs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timing = "--timing" in sys.argv
    uid = caffe.NCCL.new_uid()
    procs = []
    for rank in range(nprocs):
        p = Process(target=solve, args=(proto, weights, nprocs, timing, uid, rank))
        p.daemon = True
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
    sys.exit(max(p.exitcode for p in procs))
