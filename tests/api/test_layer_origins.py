"""Every layer type names where it comes from: BVLC Caffe 1.0, or the fork whose
definition it follows (`register(..., fork=...)`, the README table's "from" column).

BVLC_TYPES is what real Caffe 1.0 registers (`caffe.layer_type_list()` in the oracle's
pycaffe; the oracle test below re-reads it)."""
from __future__ import annotations

import re

import pytest

import caffe_fx
from caffe_fx.lowering.registry import lookup

BVLC_TYPES = frozenset({
    "AbsVal", "Accuracy", "ArgMax", "BNLL", "BatchNorm", "BatchReindex", "Bias", "Clip",
    "Concat", "ContrastiveLoss", "Convolution", "Crop", "Data", "Deconvolution", "Dropout",
    "DummyData", "ELU", "Eltwise", "Embed", "EuclideanLoss", "Exp", "Filter", "Flatten",
    "HDF5Data", "HDF5Output", "HingeLoss", "Im2col", "ImageData", "InfogainLoss",
    "InnerProduct", "Input", "LRN", "LSTM", "LSTMUnit", "Log", "MVN", "MemoryData",
    "MultinomialLogisticLoss", "PReLU", "Parameter", "Pooling", "Power", "Python", "RNN",
    "ReLU", "Reduction", "Reshape", "SPP", "Scale", "Sigmoid", "SigmoidCrossEntropyLoss",
    "Silence", "Slice", "Softmax", "SoftmaxWithLoss", "Split", "Swish", "TanH", "Threshold",
    "Tile", "WindowData",
})


def test_every_type_beyond_bvlc_names_its_fork() -> None:
    missing, wrong = [], []
    for kind in caffe_fx.supported_layers():
        fork = lookup(kind).fork
        if kind in BVLC_TYPES and fork is not None:
            wrong.append(f"{kind} ({fork})")
        elif kind not in BVLC_TYPES and not (fork and re.fullmatch(r"[\w.-]+/[\w.-]+", fork)):
            missing.append(kind)
    assert not missing, f"types BVLC lacks with no fork named: {missing}"
    assert not wrong, f"BVLC types marked as a fork's: {wrong}"


def test_the_fork_types_include_the_published_nets_ones() -> None:
    forks = {k: lookup(k).fork for k in caffe_fx.supported_layers() if k not in BVLC_TYPES}
    assert forks["ROIPooling"] == "rbgirshick/caffe-fast-rcnn"
    assert forks["PriorBox"] == forks["Normalize"] == "weiliu89/caffe"


@pytest.mark.oracle
def test_bvlc_types_are_the_oracles() -> None:
    import os
    import subprocess
    from pathlib import Path

    root = Path(os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))  # caffe-oracle's install.sh
    if not (root / "usr" / "bin" / "caffe").exists():
        pytest.skip(f"the oracle's chroot is not installed at {root}")
    done = subprocess.run(["chroot", str(root), "python3", "-c",
                           "import caffe; print(' '.join(caffe.layer_type_list()))"],
                          capture_output=True, text=True, check=True)
    assert set(done.stdout.split()) == BVLC_TYPES
