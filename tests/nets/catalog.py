"""The published nets that tests/nets runs, as their authors wrote them (in ../shared/models).

`WEIGHTED`: nets whose trained weights are in ../shared/models; tools/make_net_goldens.py
runs them through real Caffe once and keeps inputs and blobs in tests/golden/nets/.
`RANDOMIZED`: nets without weights here, run live against the oracle with
`--randomize 7` (tests/nets/test_randomized_nets.py).  Prototxts and weights are never
copied into this repository (several licences forbid it); tests read them from ../shared.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "nets"


@dataclass(frozen=True)
class PublishedNet:
    """One net.

    name: id of the test and stem of its golden file.
    prototxt, weights: paths under ../shared/models.
    inputs: {blob: shape} fed to both Caffe and caffe_fx; values are U(low, high)
        (`integers` for labels: U{0..n-1}), seeded by the name.
    data_layer_as_input: the net reads its data from files (a data layer): for the oracle
        that layer is replaced by net-level `input:` fields; caffe_fx compiles the
        published prototxt unchanged, its data layer's tops becoming inputs.
    stored_blobs: for big nets, the only blobs kept in the golden (outputs always are).
    extended: checked only in the long run (CAFFE_FX_PUBLISHED=1, tests marked
        `published`): another net of the default run has the same layers and format.
    """

    name: str
    prototxt: str
    inputs: dict[str, tuple[int, ...]]
    weights: str | None = None
    low: float = -1.0
    high: float = 1.0
    integers: dict[str, int] = field(default_factory=dict)
    data_layer_as_input: bool = False
    stored_blobs: tuple[str, ...] | None = None
    extended: bool = False

    def make_inputs(self) -> dict[str, np.ndarray]:
        seed = int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)
        r = np.random.RandomState(seed)
        arrays = {}
        for blob, shape in self.inputs.items():
            if blob in self.integers:
                arrays[blob] = r.randint(0, self.integers[blob], size=shape).astype(np.float32)
            else:
                arrays[blob] = r.uniform(self.low, self.high, size=shape).astype(np.float32)
        return arrays

    def oracle_prototxt(self, models: Path) -> str:
        """The prototxt text Caffe runs: the published one, or (data_layer_as_input) the
        same net with its first data layer turned into `input:` fields of these shapes."""
        text = (models / self.prototxt).read_text()
        if not self.data_layer_as_input:
            return text
        text = _drop_first_block(text, ("IMAGE_DATA", '"ImageData"', "DATA", '"Data"',
                                        "HDF5_DATA", '"HDF5Data"'))
        fields = "".join(
            f'input: "{b}"\ninput_shape {{ {" ".join(f"dim: {d}" for d in s)} }}\n'
            for b, s in self.inputs.items())
        name = re.match(r'\s*name:\s*"[^"]*"\s*\n', text)
        cut = name.end() if name else 0
        return text[:cut] + fields + text[cut:]


def _drop_first_block(text: str, types: tuple[str, ...]) -> str:
    """Removes the first top-level `layer(s) { ... }` block whose type is one of `types`."""
    for m in re.finditer(r"^(layers?)\s*\{", text, flags=re.M):
        depth, i = 0, m.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                break
        block = text[m.start():i]
        kind = re.search(r"^\s*type:\s*(\S+)", block, flags=re.M)
        if kind and kind.group(1) in types:
            return text[:m.start()] + text[i:]
    raise ValueError("no data layer to replace")


_MTCNN = "kpzhang93+MTCNN_face_detection_alignment/code/codes/MTCNNv2/model"
_SR = "wangxuewen99+Super-Resolution"

WEIGHTED: list[PublishedNet] = [
    PublishedNet("lenet", "ethereon+caffe-tensorflow/examples/mnist/lenet.prototxt",
                 {"data": (2, 1, 28, 28)},
                 "ethereon+caffe-tensorflow/examples/mnist/lenet_iter_10000.caffemodel",
                 low=0.0),
    PublishedNet("mnist_deploy", "ahmdtaha+mnist_deploy/mnist_deploy.prototxt",
                 {"data": (2, 1, 28, 28)}, "ahmdtaha+mnist_deploy/lenet_iter_10000.caffemodel",
                 low=0.0),
    # A V1 prototxt with an ImageData layer, Accuracy, SoftmaxWithLoss and ArgMax.
    PublishedNet("cifar10_quick_v1",
                 "ikkiChung+Prediction-Example-With-Caffe/examples/prediction_example/"
                 "prediction_example.prototxt",
                 {"data": (2, 3, 32, 32), "label": (2,)},
                 "ikkiChung+Prediction-Example-With-Caffe/examples/cifar10/"
                 "cifar10_quick_iter_5000.caffemodel",
                 low=-100.0, high=100.0, integers={"label": 10}, data_layer_as_input=True),
    PublishedNet("cifar10_quick_h5", "jwcom79+myproject/examples/cifar10/cifar10_quick.prototxt",
                 {"data": (2, 3, 32, 32)},
                 "jwcom79+myproject/examples/cifar10/cifar10_quick_iter_5000.caffemodel.h5",
                 low=-100.0, high=100.0),
    PublishedNet("cifar10_full_h5", "jwcom79+myproject/examples/cifar10/cifar10_full.prototxt",
                 {"data": (2, 3, 32, 32)},
                 "jwcom79+myproject/examples/cifar10/cifar10_full_iter_70000.caffemodel.h5",
                 low=-100.0, high=100.0),
    # MTCNN's caffemodels also hold training-only layers absent from det*.prototxt.
    PublishedNet("mtcnn_det1", f"{_MTCNN}/det1.prototxt", {"data": (2, 3, 12, 12)},
                 f"{_MTCNN}/det1.caffemodel"),
    PublishedNet("mtcnn_det2", f"{_MTCNN}/det2.prototxt", {"data": (2, 3, 24, 24)},
                 f"{_MTCNN}/det2.caffemodel"),
    PublishedNet("mtcnn_det3", f"{_MTCNN}/det3.prototxt", {"data": (2, 3, 48, 48)},
                 f"{_MTCNN}/det3.caffemodel"),
    PublishedNet("mtcnn_det4", f"{_MTCNN}/det4.prototxt", {"data": (2, 15, 24, 24)},
                 f"{_MTCNN}/det4.caffemodel"),
    PublishedNet("vanilla_cnn", "ishay2b+VanillaCNN/ZOO/vanilla_deploy.prototxt",
                 {"data": (2, 3, 40, 40)}, "ishay2b+VanillaCNN/ZOO/vanillaCNN.caffemodel"),
    PublishedNet("espcn", f"{_SR}/ESPCN/ESPCN_mat.prototxt", {"data": (2, 1, 25, 25)},
                 f"{_SR}/ESPCN/snapshot/espcn_iter_5303500.caffemodel", low=0.0),
    PublishedNet("fsrcnn", f"{_SR}/FSRCNN/FSRCNN_mat.prototxt", {"data": (2, 1, 7, 7)},
                 f"{_SR}/FSRCNN/snapshot/snapshot_iter_2546000.caffemodel", low=0.0),
]

_BVLC = "BVLC+caffe/models"
_IMAGENET = {"data": (1, 3, 224, 224)}

RANDOMIZED: list[PublishedNet] = [
    PublishedNet("alexnet", f"{_BVLC}/bvlc_alexnet/deploy.prototxt", {"data": (1, 3, 227, 227)}),
    PublishedNet("caffenet", f"{_BVLC}/bvlc_reference_caffenet/deploy.prototxt",
                 {"data": (1, 3, 227, 227)}),
    PublishedNet("googlenet", f"{_BVLC}/bvlc_googlenet/deploy.prototxt", _IMAGENET),
    PublishedNet("vgg16", "davidgengenbach+vgg-caffe/model/VGG_ILSVRC_16_layers_deploy.prototxt",
                 _IMAGENET),
    # vgg16 (the same file format) and vgg19_v1 (the same net in V1) cover it.
    PublishedNet("vgg19", "davidgengenbach+vgg-caffe/model/VGG_ILSVRC_19_layers_deploy.prototxt",
                 _IMAGENET, extended=True),
    PublishedNet("vgg19_v1", "crowsonkb+style_transfer/VGG_ILSVRC_19_layers_deploy.prototxt",
                 _IMAGENET),
    PublishedNet("resnet50", "KaimingHe+deep-residual-networks/prototxt/ResNet-50-deploy.prototxt",
                 _IMAGENET),
    PublishedNet("resnet101",  # resnet50's layers, deeper
                 "KaimingHe+deep-residual-networks/prototxt/ResNet-101-deploy.prototxt",
                 _IMAGENET, extended=True),
    PublishedNet("squeezenet_v1_0", "forresti+SqueezeNet/SqueezeNet_v1.0/deploy.prototxt",
                 {"data": (1, 3, 227, 227)}),
    PublishedNet("squeezenet_v1_1", "forresti+SqueezeNet/SqueezeNet_v1.1/deploy.prototxt",
                 {"data": (1, 3, 227, 227)}),
    PublishedNet("mobilenet_v1", "shicai+MobileNet-Caffe/mobilenet_deploy.prototxt", _IMAGENET),
    PublishedNet("mobilenet_v2", "shicai+MobileNet-Caffe/mobilenet_v2_deploy.prototxt",
                 _IMAGENET),
    # Declared 500x500; fully convolutional (conv1 pads by 100), so a smaller image keeps
    # the test fast while still going through every Crop offset.
    PublishedNet("fcn8s", "shelhamer+fcn.berkeleyvision.org/voc-fcn8s/deploy.prototxt",
                 {"data": (1, 3, 96, 96)}),
    PublishedNet("colorization", "richzhang+colorization/models/colorization_deploy_v2.prototxt",
                 {"data_l": (1, 1, 224, 224)}, low=-50.0, high=50.0),
]


def params(nets: list[PublishedNet]) -> list:
    """pytest parameters for `nets`, the extended ones marked `published`."""
    import pytest

    return [pytest.param(n, id=n.name, marks=[pytest.mark.published] if n.extended else [])
            for n in nets]


def by_name(name: str) -> PublishedNet:
    for net in WEIGHTED + RANDOMIZED:
        if net.name == name:
            return net
    raise KeyError(name)
