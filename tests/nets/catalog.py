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
    fork: the Caffe fork whose oracle runs the net (CAFFE_ORACLE_FORK: "ssd", "segnet";
        "" is BVLC).  The forks have no Input layer: data layers become `input:` fields.
    oracle_edits: names in ORACLE_EDITS: rewrites of the text the oracle runs, for what
        no oracle here has (a fork's field or layer), each into what it is defined as;
        blobs an edit adds are named `*__oracle` and are not compared.  caffe_fx always
        compiles the published prototxt unchanged.
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
    fork: str = ""
    oracle_edits: tuple[str, ...] = ()
    photo: str = ""  # a face detector's preprocessing of PHOTO, a key of PHOTO_FEEDS

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

    def photo_inputs(self, models: Path) -> dict[str, np.ndarray]:
        """PHOTO as this detector's demo feeds it: its 320x240 centre (cropped, never
        resampled, so the pixels are the JPEG's own), NCHW."""
        from PIL import Image

        with Image.open(models / PHOTO) as im:
            rgb = np.asarray(im.convert("RGB"), np.float32)
        (blob, shape), = self.inputs.items()
        h, w = shape[2:]
        top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        crop = rgb[top:top + h, left:left + w]
        return {blob: np.ascontiguousarray(PHOTO_FEEDS[self.photo](crop).transpose(2, 0, 1)[None])}

    def oracle_prototxt(self, models: Path) -> str:
        """The prototxt text Caffe runs: the published one, or (data_layer_as_input) the
        same net with its first data layer turned into `input:` fields of these shapes."""
        text = (models / self.prototxt).read_text()
        for edit in self.oracle_edits:
            text = ORACLE_EDITS[edit](text)
        if not self.data_layer_as_input:
            return text
        text = _drop_first_block(text, ("IMAGE_DATA", '"ImageData"', "DATA", '"Data"',
                                        "HDF5_DATA", '"HDF5Data"', '"DenseImageData"',
                                        '"AnnotatedData"'))
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


# A real photo for the face detectors' detections, read from ../shared at test time (never
# copied here): the cat of shicai/MobileNet-Caffe's README, 480x360.
PHOTO = "shicai+MobileNet-Caffe/cat.jpg"

PHOTO_FEEDS = {
    # libfacedetection's Caffe nets: BGR 0-255, no mean (its train prototxt's are off).
    "bgr255": lambda rgb: rgb[..., ::-1],
    # Ultra-Light-Fast-Generic-Face-Detector's caffe/ demo: (RGB - 127) / 128.
    "rgb_127_128": lambda rgb: (rgb - 127.0) / 128.0,
}


def _ceil_mode_as_round_mode(text: str) -> str:
    """The DenseNet forks' PoolingParameter `ceil_mode` (BVLC/caffe#3057, never merged)
    in BVLC's words: `ceil_mode: false` is `round_mode: FLOOR`; `true` is BVLC's default
    (CEIL), so it is dropped."""
    text = re.sub(r"\bceil_mode\s*:\s*false\b", "round_mode: FLOOR", text)
    return re.sub(r"\bceil_mode\s*:\s*true\b", "", text)


def _axpy_as_scale_eltwise(text: str) -> str:
    """SENet's Axpy (bottoms a (N, C, 1, 1), x and y (N, C, H, W); top a * x + y, its
    definition in hujie-frank/SENet's axpy_layer.cpp) as BVLC layers that compute exactly
    that: a Flatten of a to (N, C), a Scale of x by it (axis 0) and an Eltwise SUM with y.
    The top keeps its name; the two blobs between are `<name>__oracle_a/_ax`."""
    def one(m: re.Match) -> str:
        body = m.group(0)
        name = re.search(r'name:\s*"([^"]+)"', body).group(1)  # type: ignore[union-attr]
        a, x, y = re.findall(r'bottom:\s*"([^"]+)"', body)
        top = re.search(r'top:\s*"([^"]+)"', body).group(1)  # type: ignore[union-attr]
        fa, fx = f"{name}__oracle_a", f"{name}__oracle_ax"
        return (f'layer {{ name: "{fa}" type: "Flatten" bottom: "{a}" top: "{fa}" }}\n'
                f'layer {{ name: "{fx}" type: "Scale" bottom: "{x}" bottom: "{fa}" '
                f'top: "{fx}" scale_param {{ axis: 0 }} }}\n'
                f'layer {{ name: "{name}" type: "Eltwise" bottom: "{fx}" bottom: "{y}" '
                f'top: "{top}" eltwise_param {{ operation: SUM }} }}')
    return re.sub(r'layer\s*\{[^{}]*type:\s*"Axpy"[^{}]*\}', one, text)


ORACLE_EDITS = {
    "ceil_mode_as_round_mode": _ceil_mode_as_round_mode,
    "axpy_as_scale_eltwise": _axpy_as_scale_eltwise,
}


_MTCNN = "kpzhang93+MTCNN_face_detection_alignment/code/codes/MTCNNv2/model"
_SR = "wangxuewen99+Super-Resolution"
_YU = "ShiqiYu+libfacedetection/models/caffe"
_ULFD = "Linzaer+Ultra-Light-Fast-Generic-Face-Detector-1MB/caffe/model"

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
    # The SSD fork's face detectors with their real weights (issue #11); big maps, so the
    # goldens keep the outputs and the heads' last blobs.
    *(PublishedNet(f"yufacedetectnet_{v}", f"{_YU}/yufacedetectnet-open-{v}.prototxt",
                   {"data": (1, 3, 240, 320)}, f"{_YU}/yufacedetectnet-open-{v}.caffemodel",
                   low=0.0, high=255.0, fork="ssd", photo="bgr255",
                   stored_blobs=("mbox_loc", "mbox_conf_softmax", "mbox_priorbox"))
      for v in ("v1", "v2")),
    PublishedNet("rfb_320", f"{_ULFD}/RFB-320/RFB-320.prototxt", {"input": (1, 3, 240, 320)},
                 f"{_ULFD}/RFB-320/RFB-320.caffemodel", fork="ssd", photo="rgb_127_128",
                 stored_blobs=("434", "459")),
    PublishedNet("slim_320", f"{_ULFD}/Slim-320/slim-320.prototxt", {"input": (1, 3, 240, 320)},
                 f"{_ULFD}/Slim-320/slim-320.caffemodel", fork="ssd", photo="rgb_127_128",
                 stored_blobs=("349", "374")),
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


# Nets of the Caffe forks (issue #11) with randomized weights, against the fork's oracle
# (or BVLC's, through ORACLE_EDITS) run live: tests/nets/test_randomized_nets.py.  Each
# fork's layers have one net in the default run (3-22 s each); full SegNet (SegNet-basic's
# layers, deeper, ~160 s) is `published`.
FORK_RANDOMIZED: list[PublishedNet] = [
    # ceil_mode: false on pool1 (56x56, not BVLC's CEIL 57x57); BVLC runs it as FLOOR.
    PublishedNet("densenet121", "shicai+DenseNet-Caffe/DenseNet_121.prototxt", _IMAGENET,
                 oracle_edits=("ceil_mode_as_round_mode",)),
    # No oracle has Axpy: BVLC runs each as Flatten + Scale(axis 0) + Eltwise SUM.
    PublishedNet("se_resnet50", "hujie-frank+SENet/models/SE-ResNet-50.prototxt", _IMAGENET,
                 oracle_edits=("axpy_as_scale_eltwise",)),
    PublishedNet("segnet_basic",
                 "alexgkendall+SegNet-Tutorial/Models/segnet_basic_inference.prototxt",
                 {"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)}, integers={"label": 11},
                 fork="segnet", data_layer_as_input=True),
    PublishedNet("segnet", "alexgkendall+SegNet-Tutorial/Models/segnet_inference.prototxt",
                 {"data": (1, 3, 360, 480), "label": (1, 1, 360, 480)}, integers={"label": 11},
                 fork="segnet", data_layer_as_input=True, extended=True),
    PublishedNet("mobilenet_ssd", "chuanqi305+MobileNet-SSD/deploy.prototxt",
                 {"data": (1, 3, 300, 300)}, fork="ssd"),
]


def params(nets: list[PublishedNet]) -> list:
    """pytest parameters for `nets`, the extended ones marked `published`."""
    import pytest

    return [pytest.param(n, id=n.name, marks=[pytest.mark.published] if n.extended else [])
            for n in nets]


def by_name(name: str) -> PublishedNet:
    for net in WEIGHTED + RANDOMIZED + FORK_RANDOMIZED:
        if net.name == name:
            return net
    raise KeyError(name)
