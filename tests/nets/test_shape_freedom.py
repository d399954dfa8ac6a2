"""A compiled net is not tied to the shapes its prototxt declares.

Each GraphModule is compiled at the declared input shape, then run at other batch sizes
or image sizes; real Caffe, reshaped to the same inputs, gives the expected blobs.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.nets.compare import assert_blobs_match, compile_net, run, check_supported

LENET = "ethereon+caffe-tensorflow/examples/mnist/lenet.prototxt"  # declares batch 64
LENET_WEIGHTS = "ethereon+caffe-tensorflow/examples/mnist/lenet_iter_10000.caffemodel"
SQUEEZENET = "forresti+SqueezeNet/SqueezeNet_v1.1/deploy.prototxt"  # declares batch 10
PNET = "kpzhang93+MTCNN_face_detection_alignment/code/codes/MTCNNv2/model/det1.prototxt"
PNET_WEIGHTS = "kpzhang93+MTCNN_face_detection_alignment/code/codes/MTCNNv2/model/det1.caffemodel"
FULL_CONV = "BVLC+caffe/examples/net_surgery/bvlc_caffenet_full_conv.prototxt"  # 451x451


def _inputs(shape: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    return {"data": np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)}


def _check_shapes(oracle, prototxt, weights, shapes, tmp_path) -> None:
    """Compiles once at the declared shapes; compares with Caffe at each of `shapes`.
    Without `weights`, the oracle randomizes them first and saves them for both sides."""
    check_supported(prototxt)
    gm = None
    for k, shape in enumerate(shapes):
        inputs = _inputs(shape, k)
        if weights is None:
            weights = tmp_path / "randomized.caffemodel"
            data, meta = oracle(prototxt, inputs, randomize=7, save_weights=weights,
                                workdir=tmp_path)
        else:
            data, meta = oracle(prototxt, inputs, weights=weights, workdir=tmp_path)
        caffe = {b: data[f"data/{b}"] for b in meta["blobs"] if b not in meta["inputs"]}
        if gm is None:
            gm = compile_net(prototxt, weights, outputs=list(caffe))
        assert_blobs_match(run(gm, inputs), caffe, f"{prototxt.name} at {shape}")


@pytest.mark.oracle
def test_lenet_other_batches(oracle, shared_models, tmp_path) -> None:
    _check_shapes(oracle, shared_models / LENET, shared_models / LENET_WEIGHTS,
                  [(1, 1, 28, 28), (2, 1, 28, 28)], tmp_path)


@pytest.mark.oracle
def test_pnet_other_image_sizes(oracle, shared_models, tmp_path) -> None:
    _check_shapes(oracle, shared_models / PNET, shared_models / PNET_WEIGHTS,
                  [(1, 3, 31, 40), (2, 3, 17, 12)], tmp_path)


@pytest.mark.oracle
@pytest.mark.slow
def test_squeezenet_declared_batch_10_runs_batch_1_and_2(oracle, shared_models,
                                                          tmp_path) -> None:
    _check_shapes(oracle, shared_models / SQUEEZENET, None,
                  [(1, 3, 227, 227), (2, 3, 227, 227)], tmp_path)


@pytest.mark.oracle
@pytest.mark.slow
def test_caffenet_full_conv_other_image_sizes(oracle, shared_models, tmp_path) -> None:
    _check_shapes(oracle, shared_models / FULL_CONV, None,
                  [(1, 3, 227, 227), (1, 3, 259, 291)], tmp_path)
