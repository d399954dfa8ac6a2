"""Every published net of ../shared/models compiles in every phase it declares and runs a
forward on random inputs (issue #11's coverage proof).

Opt-in (the default suite has no time for it; a few minutes on 2 cores):

    CAFFE_FX_PUBLISHED=1 python -m pytest -q -m published tests/nets/test_published_coverage.py

`python -m tests.nets.test_published_coverage` prints one line per net and phase and the
counts (the README's "Published nets" section quotes them).

Which files: every `*.prototxt` under ../shared/models that is a net: not a solver (name
with "solver", or SolverParameter text) nor a label map (no layers and no inputs).

Which phases a net declares: a net whose layers carry no phase rule runs the same layers in
TRAIN and TEST, so it declares both (Dropout, BN and the losses behave differently there).
A net with phase rules declares exactly the phases they name (`include { phase: P }` names
P, `exclude { phase: P }` the other one): a train.prototxt whose only rule is a data layer
in TRAIN declares TRAIN only.  A phase whose include rules name stages runs once per stage
(mnist_autoencoder's TEST runs as `test-on-train` and as `test-on-test`), else with none.

Inputs: batch 1.  Input layers and `input:` fields keep their other dims (a few published
placeholders, such as openpose's 1x1 image, and the slowest fully convolutional nets get
a small size from _INPUT_SIZE).  Data layers become inputs through input_shapes=, shaped
from their own parameters where those fix the shape (crop_size, new_height/new_width,
resize_param, is_color), else from _DATASET (by the dataset their source names) or
_PYTHON_DATA (Python data layers, by their class).  Values are U(-1, 1), except blobs
Caffe reads as labels (integers 0/1), R-CNN rois (boxes inside the image on item 0) and
SSD ground truth rows.  Weights: randomize_weights (well-scaled, seeded).

Side files a layer reads at set-up by a relative path (SSD's DetectionEvaluate
name_size_file) are written into a temporary working folder (_set_up_files).

Expected failures are EXPECTED below, each with its reason and the error it must give;
any other failure fails the test, and so does an expected one that starts to pass.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.nets.oracle import MODELS

RUN = os.environ.get("CAFFE_FX_PUBLISHED") == "1"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Case:
    """One net in one phase (and stage)."""

    prototxt: str  # under ../shared/models
    phase: str  # "train" | "test"
    stage: str = ""

    @property
    def id(self) -> str:
        return f"{self.prototxt}:{self.phase}" + (f":{self.stage}" if self.stage else "")


@dataclass(frozen=True)
class Expected:
    """A documented failure: the exception type and a pattern its message must match."""

    error: str  # the caffe_fx.errors class name
    match: str
    why: str


_PY_MODULE = "Python layers that take bottoms need their authors' module, not on the path"
_CLS3X = "a MobileNet-SSD template: `num_output: cls3x` is a placeholder its script fills"
_IPLUGIN = "TensorRT's IPlugin: a layer no public Caffe fork defines"


def _modules(*names: str) -> str:
    # The one error names each module the net's Python layers need (issue #11).
    return "".join(f"(?=[\\s\\S]*'{re.escape(n)}')" for n in names)


_RPN = _modules("rpn.anchor_target_layer", "rpn.proposal_layer", "rpn.proposal_target_layer")
_RPN_TEST = _modules("rpn.proposal_layer")

# Keyed by prototxt (every declared phase) or by Case.id.
EXPECTED: dict[str, Expected] = {
    "BVLC+caffe/examples/pycaffe/linreg.prototxt":
        Expected("NetDefinitionError", _modules("pyloss"), _PY_MODULE),
    **{f"ppengtang+oicr/models/{m}/train.prototxt":
       Expected("NetDefinitionError", _modules("oicr_layer.layer"), _PY_MODULE)
       for m in ("VGG16", "VGG_M")},
    **{f"rbgirshick+py-faster-rcnn/models/{d}/{m}/faster_rcnn_end2end/train.prototxt":
       Expected("NetDefinitionError", _RPN, _PY_MODULE)
       for d, ms in (("pascal_voc", ("VGG16", "VGG_CNN_M_1024", "ZF")),
                     ("coco", ("VGG16", "VGG_CNN_M_1024"))) for m in ms},
    **{f"rbgirshick+py-faster-rcnn/models/{d}/{m}/faster_rcnn_end2end/test.prototxt":
       Expected("NetDefinitionError", _RPN_TEST, _PY_MODULE)
       for d, ms in (("pascal_voc", ("VGG16", "VGG_CNN_M_1024", "ZF")),
                     ("coco", ("VGG16", "VGG_CNN_M_1024"))) for m in ms},
    "ishay2b+VanillaCNN/ZOO/vanilla_train.prototxt":
        Expected("NetDefinitionError", _modules("python.NormlizedMSE"), _PY_MODULE),
    "Shinung+gpu-rest-engine/models/VGGNet/VOC0712/SSD_300x300/ssd_deploy_iplugin.prototxt":
        Expected("UnsupportedLayerError", r"IPlugin[\s\S]*register_layer", _IPLUGIN),
    **{f"chuanqi305+MobileNet-SSD/template/MobileNetSSD_{k}_template.prototxt":
       Expected("ProtoParseError", "cls3x", _CLS3X) for k in ("deploy", "test", "train")},
}


# ---------------------------------------------------------------- which nets and phases

def _is_net(path: Path) -> bool:
    if "solver" in path.name.lower():
        return False
    text = path.read_text(errors="replace")
    if re.search(r"^\s*(base_lr|lr_policy|max_iter|test_iter)\s*:", text, flags=re.M):
        return False
    # A label map (SSD's labelmap_voc.prototxt) holds `item { ... }` entries only.
    return bool(re.search(r"^\s*(layers?|input)\s*[{:]", text, flags=re.M))


def published_nets(models: Path = MODELS) -> list[str]:
    return sorted(str(p.relative_to(models)) for p in models.rglob("*.prototxt") if _is_net(p))


def declared_cases(rel: str, models: Path = MODELS) -> list[Case]:
    """The net's cases by the rule of the module docstring; a net that cannot be read
    (the cls3x templates) gets its TEST case, which must fail as EXPECTED says."""
    from caffe_fx.errors import CaffeFxError
    from caffe_fx.frontend.read import read_net
    from caffe_fx.proto import caffe_pb2

    try:
        net = read_net(str(models / rel))
    except CaffeFxError:
        return [Case(rel, "test")]
    named: set[int] = set()
    stages: dict[int, set[str]] = {caffe_pb2.TRAIN: set(), caffe_pb2.TEST: set()}
    for layer in net.layer:
        for rule in layer.include:
            if rule.HasField("phase"):
                named.add(rule.phase)
                stages[rule.phase].update(rule.stage)
        for rule in layer.exclude:
            if rule.HasField("phase"):
                named.add(caffe_pb2.TEST if rule.phase == caffe_pb2.TRAIN else caffe_pb2.TRAIN)
    phases = named or {caffe_pb2.TRAIN, caffe_pb2.TEST}
    cases = []
    for phase, word in ((caffe_pb2.TEST, "test"), (caffe_pb2.TRAIN, "train")):
        if phase in phases:
            cases += [Case(rel, word, s) for s in sorted(stages[phase])] or [Case(rel, word)]
    return cases


# ---------------------------------------------------------------- input shapes

# Data layers whose parameters leave (C, H, W) to the records: by a word of their source.
_DATASET: dict[str, Shape] = {
    "cifar": (3, 32, 32),
    "siamese": (2, 28, 28),  # mnist_siamese: the pair stacked as two channels
    "mnist": (1, 28, 28),
    "ilsvrc12": (3, 256, 256),  # ImageNet LMDBs (the crop_size then applies)
    "imagenet": (3, 256, 256),
    "hdf5_classification": (4,),  # data (N, 4) in the example's HDF5 files
    "VanilaCNN": (3, 40, 40),
    "HED-BSDS": (3, 64, 64),
    "flickr_style": (3, 256, 256),
    "cifar10_data": (3, 32, 32),
    "CamVid": (3, 360, 480),  # SegNet: its Upsample sizes fix 360x480
    "SUN": (3, 360, 480),
}

# Other tops of those layers (the label is (N,) unless named here): by net folder word.
_HDF5_TOPS: dict[str, dict[str, Shape]] = {
    "hdf5_classification": {"data": (1, 4), "label": (1,)},
    "VanillaCNN": {"X": (1, 3, 40, 40), "landmarks": (1, 10)},
    # The super-resolution nets' labels are the size their unpadded convs make.
    "ESPCN": {"data": (1, 1, 17, 17), "label": (1, 9, 9, 9)},
    "FSRCNN": {"data": (1, 1, 11, 11), "label": (1, 1, 31, 31)},
}

# Python data layers (tops -> shapes; "R" rois, "K4" 4 x classes), by python_param.layer.
_IMAGE = (1, 3, 64, 64)
_PYTHON_DATA: dict[str, dict[str, Shape]] = {
    "VOCSegDataLayer": {"data": _IMAGE, "label": (1, 1, 64, 64)},
    "SBDDSegDataLayer": {"data": _IMAGE, "label": (1, 1, 64, 64)},
    "PASCALContextSegDataLayer": {"data": _IMAGE, "label": (1, 1, 64, 64)},
    "NYUDSegDataLayer": {"data": _IMAGE, "color": _IMAGE, "depth": (1, 1, 64, 64),
                         "hha": _IMAGE, "label": (1, 1, 64, 64)},
    "SIFTFlowSegDataLayer": {"data": _IMAGE, "sem": (1, 1, 64, 64), "geo": (1, 1, 64, 64)},
    "RoIDataLayer": {"data": (1, 3, 128, 128), "rois": (4, 5), "labels": (4,),
                     "bbox_targets": (4, -4), "bbox_loss_weights": (4, -4),
                     "bbox_inside_weights": (4, -4), "bbox_outside_weights": (4, -4),
                     "im_info": (1, 3), "gt_boxes": (2, 5)},
}

# Nets whose Python data layer's tops differ from its class's usual ones.
_PYTHON_DATA_BY_NET: dict[str, dict[str, Shape]] = {
    "ppengtang+oicr": {"labels": (1, 20)},  # image-level labels, one row per image
}

# Input blobs given a size other than the declared one: placeholders (openpose declares
# 1x1) and fully convolutional nets too slow at their declared size for this run.
_INPUT_SIZE: dict[str, tuple[int, int]] = {
    "CMU-Perceptual-Computing-Lab+openpose": (64, 64),
    "shelhamer+fcn.berkeleyvision.org": (64, 64),
    "s9xie+hed": (64, 64),
    "BVLC+caffe/examples/net_surgery/bvlc_caffenet_full_conv.prototxt": (227, 227),
    "BVLC+caffe@rc/examples/imagenet/bvlc_caffenet_full_conv.prototxt": (227, 227),
}

_LABEL_BLOBS = {"label", "labels", "sim", "sem", "geo"}


def _lookup(table: Mapping[str, object], *keys: str) -> object | None:
    for word, value in table.items():
        if any(word in k for k in keys):
            return value
    return None


def _bbox_width(net) -> int:
    """4 x classes: the num_output of the layer that predicts the boxes (bbox_pred)."""
    for layer in net.layer:
        if layer.name == "bbox_pred":
            return layer.inner_product_param.num_output
    return 84


def input_shapes(rel: str, net) -> dict[str, Shape]:
    """Shapes for every input and data-layer top of the filtered net `net`."""
    from caffe_fx.lowering.builder import is_source

    shapes: dict[str, Shape] = {}
    size = _lookup(_INPUT_SIZE, rel)

    def image(dims: Shape) -> Shape:
        dims = (1, *dims[1:])
        if size is not None and len(dims) == 4:
            dims = (1, dims[1], *size)  # type: ignore[misc]
        return dims

    for name, dims in _legacy_inputs(net).items():
        shapes[name] = image(dims)
    for layer in net.layer:
        if layer.type == "Input":
            param = layer.input_param
            for i, top in enumerate(layer.top):
                dims = tuple(param.shape[min(i, len(param.shape) - 1)].dim)
                shapes[top] = image(dims)
        elif is_source(layer):
            shapes.update(_source_shapes(rel, net, layer))
    return shapes


def _legacy_inputs(net) -> dict[str, Shape]:
    out: dict[str, Shape] = {}
    for i, name in enumerate(net.input):
        if len(net.input_shape) > i:
            out[name] = tuple(net.input_shape[i].dim)
        elif len(net.input_dim) >= 4 * (i + 1):
            out[name] = tuple(net.input_dim[4 * i:4 * i + 4])
    return out


def _source_shapes(rel: str, net, layer) -> dict[str, Shape]:
    tp = layer.transform_param
    crop = tp.crop_size
    tops = list(layer.top)
    if layer.type == "Python":
        table = {**_PYTHON_DATA[layer.python_param.layer],
                 **(_lookup(_PYTHON_DATA_BY_NET, rel) or {})}  # type: ignore[dict-item]
        out = {}
        for t in tops:
            dims = table[t]
            out[t] = tuple(_bbox_width(net) if d == -4 else d for d in dims)
        return out
    if layer.type == "HDF5Data":
        table = _lookup(_HDF5_TOPS, rel, layer.hdf5_data_param.source)
        return {t: table[t] for t in tops}  # type: ignore[index]
    if layer.type == "AnnotatedData":
        resize = tp.resize_param
        out = {tops[0]: (1, 3, resize.height, resize.width)}
        if len(tops) > 1:
            out[tops[1]] = (1, 1, 2, 8)
        return out
    if layer.type == "DenseImageData":
        p = layer.dense_image_data_param
        h, w = (p.crop_height, p.crop_width) if p.crop_height else \
            (p.new_height, p.new_width) if p.new_height else \
            _lookup(_DATASET, p.source, rel)[1:]  # type: ignore[index]
        out = {tops[0]: (1, 3 if p.is_color else 1, h, w)}
        if len(tops) > 1:
            out[tops[1]] = (1, 1, h, w)
        return out
    if layer.type == "ImageLabelmapData":
        c, h, w = _DATASET["HED-BSDS"]
        return {tops[0]: (1, c, h, w), tops[1]: (1, 1, h, w)}
    if layer.type == "ImageData":
        p = layer.image_data_param
        c = 3 if p.is_color else 1
        h, w = (p.new_height, p.new_width) if p.new_height else \
            _lookup(_DATASET, rel, p.source)[1:]  # type: ignore[index]
    elif layer.type == "WindowData":
        c, h, w = 3, crop, crop
    elif layer.type == "Data":
        c, h, w = _lookup(_DATASET, layer.data_param.source, rel)  # type: ignore[misc]
        crop = crop or layer.data_param.crop_size
    else:
        raise KeyError(f"{rel}: no shape rule for {layer.type} layer '{layer.name}'")
    if crop:
        h = w = crop
    out = {tops[0]: (1, c, h, w)}
    if len(tops) > 1:
        out[tops[1]] = (1,)
    return out


def random_inputs(shapes: Mapping[str, Shape], seed: int = 0) -> dict[str, np.ndarray]:
    r = np.random.RandomState(seed)
    out: dict[str, np.ndarray] = {}
    image_hw = next((s[2:] for s in shapes.values() if len(s) == 4 and s[1] == 3), (64, 64))
    for name, shape in shapes.items():
        if name in _LABEL_BLOBS and not (len(shape) == 4 and shape[-1] == 8):
            v = r.randint(0, 2, size=shape).astype(np.float32)
        elif name == "rois":
            h, w = image_hw
            x1 = r.uniform(0, w / 2, shape[0])
            y1 = r.uniform(0, h / 2, shape[0])
            v = np.stack([np.zeros(shape[0]), x1, y1, x1 + r.uniform(4, w / 2, shape[0]),
                          y1 + r.uniform(4, h / 2, shape[0])], 1).astype(np.float32)
        elif name == "im_info":
            v = np.array([[*image_hw, 1.0]], np.float32)
        elif len(shape) == 4 and shape[-1] == 8:  # SSD ground truth rows
            n = shape[2]
            # (xmin, ymin) then (xmax, ymax): each column sorted, boxes of positive size
            box = np.sort(r.uniform(0, 1, (n, 2, 2)), axis=1).reshape(n, 4)
            v = np.concatenate([np.zeros((n, 1)), np.ones((n, 1)), np.arange(n)[:, None],
                                box, np.zeros((n, 1))], 1).reshape(shape).astype(np.float32)
        else:
            v = r.uniform(-1, 1, size=shape).astype(np.float32)
        out[name] = v
    return out


def randomize_weights(gm, seed: int = 0) -> None:
    """Well-scaled random weights in place of compile()'s fillers, as the oracle's
    `--randomize` gives them: a deploy prototxt's absent fillers leave Caffe's constant 0,
    and its BatchNorm then divides by sqrt(eps) at every layer until MobileNet overflows.
    Weights N(0, 1/fan_in), other learnable vectors U(0.5, 1.5) (biases U(-0.1, 0.1)),
    BatchNorm's statistics mean U(-0.1, 0.1), variance U(0.5, 1.5), scale factor 1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in gm.state_dict(keep_vars=True).items():
            if not t.is_floating_point() or t.numel() == 0:
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "scale_factor":
                t.fill_(1.0)
            elif leaf in ("bias", "mean"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 - 0.1)
            elif t.dim() >= 2 and leaf != "variance":
                fan_in = max(1, t[0].numel())
                t.copy_(torch.randn(t.shape, generator=g) / fan_in ** 0.5)
            else:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)


# ---------------------------------------------------------------- one case

@contextmanager
def _set_up_files(net, shapes: Mapping[str, Shape]) -> Iterator[None]:
    """Runs in a temporary folder holding the side files a net's layers read at set-up by
    relative paths that its authors' data scripts write: DetectionEvaluate's
    name_size_file (one `name height width` line per image, the input's size)."""
    wanted = [layer.detection_evaluate_param.name_size_file for layer in net.layer
              if layer.type == "DetectionEvaluate"
              and layer.detection_evaluate_param.name_size_file]
    if not wanted:
        yield
        return
    h, w = next(s[2:] for s in shapes.values() if len(s) == 4)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        for rel in wanted:
            path = Path(tmp) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"000001 {h} {w}\n")
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(here)


def run_case(case: Case, models: Path = MODELS) -> tuple[str, str]:
    """Compiles and runs the case: ("ok", "") or (error class name, message)."""
    import torch

    import caffe_fx
    from caffe_fx.errors import CaffeFxError
    from caffe_fx.pipeline import prepare

    path = str(models / case.prototxt)
    stages = (case.stage,) if case.stage else ()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = prepare(path, phase=case.phase, stages=stages).net
            shapes = input_shapes(case.prototxt, net)
            with _set_up_files(net, shapes):
                gm = caffe_fx.compile(path, phase=case.phase, stages=stages,
                                      input_shapes=shapes, trust_python_layers=True)
                randomize_weights(gm)
                inputs = random_inputs(shapes)
                # Positional, in Caffe's order: a blob named `input` is the argument `input_`.
                with torch.no_grad():
                    out = gm(*(torch.from_numpy(inputs[k]) for k in gm.meta["caffe"].inputs))
        bad = [k for k, v in out.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not torch.isfinite(v).all()]
        if bad:
            return "NotFinite", f"outputs with inf/nan: {bad}"
        return "ok", ""
    except CaffeFxError as e:
        return type(e).__name__, str(e)
    except Exception as e:  # a crash: reported as such, it fails the test
        return f"crash {type(e).__name__}", str(e)


def all_cases(models: Path = MODELS) -> list[Case]:
    return [c for rel in published_nets(models) for c in declared_cases(rel, models)]


def expected_for(case: Case) -> Expected | None:
    return EXPECTED.get(case.id) or EXPECTED.get(case.prototxt)


def _cases_or_none() -> list[Case]:
    if not RUN or not MODELS.is_dir():
        return []
    return all_cases()


@pytest.mark.published
@pytest.mark.skipif(not RUN, reason="the published-nets coverage run: set CAFFE_FX_PUBLISHED=1")
@pytest.mark.parametrize("case", _cases_or_none(), ids=lambda c: c.id)
def test_published_net_compiles_and_runs(case: Case) -> None:
    kind, message = run_case(case)
    expected = expected_for(case)
    if expected is None:
        assert kind == "ok", f"{case.id}: {kind}: {message}"
        return
    assert kind != "ok", f"{case.id} now passes: take it off EXPECTED ({expected.why})"
    assert kind == expected.error and re.search(expected.match, message), \
        f"{case.id} fails otherwise than EXPECTED says ({expected.why}): {kind}: {message}"


@pytest.mark.published
@pytest.mark.skipif(not RUN, reason="the published-nets coverage run: set CAFFE_FX_PUBLISHED=1")
def test_every_expected_failure_names_a_published_net(shared_models) -> None:
    cases = all_cases(shared_models)
    known = {c.id for c in cases} | {c.prototxt for c in cases}
    assert sorted(set(EXPECTED) - known) == []


def main() -> Iterator[str]:
    counts = {"ok": 0, "expected": 0, "failed": 0}
    for case in all_cases():
        t = time.perf_counter()
        kind, message = run_case(case)
        dt = time.perf_counter() - t
        expected = expected_for(case)
        if kind == "ok" and expected is None:
            verdict = "ok"
        elif expected is not None and kind == expected.error \
                and re.search(expected.match, message):
            verdict = "expected"
        else:
            verdict = "failed"
        counts[verdict] += 1
        first = message.splitlines()[0][:300] if message else ""
        yield f"{verdict:8} {dt:6.1f}s {case.id} {kind} {first}"
    yield f"{counts}"


if __name__ == "__main__":
    for line in main():
        print(line, flush=True)
    sys.exit(0)
