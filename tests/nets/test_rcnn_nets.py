"""Every ROIPooling net of ../shared/models compiles and runs a forward (issue #10).

The 52 prototxts of rbgirshick/fast-rcnn, ppengtang/oicr and rbgirshick/py-faster-rcnn that
hold a ROIPooling layer, at a small size (one 3 x 64 x 64 image, 4 rois).  Python data
layers (RoIDataLayer) become inputs; Python layers with bottoms run their authors' code
(py-faster-rcnn's rpn.*, OICR's oicr_layer.layer), so compile() first refuses them naming
each module, then runs once a module of that name is on sys.path and trusted: here tiny
stand-ins written to tmp_path (a caffe.Layer of the same class name giving tops of the
authors' shapes), not the authors' code.  What a forward gives is checked where it is
known without an oracle: losses finite and >= 0, a test net's cls_prob rows summing to 1.
"""
from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import IgnoredFieldWarning, UnsupportedFieldError
from caffe_fx.frontend.read import read_net
from tests.nets.oracle import MODELS

NETS = sorted(str(p.relative_to(MODELS)) for p in MODELS.rglob("*")
              if p.suffix in (".prototxt", ".pt") and "ROIPooling" in p.read_text()) \
    if MODELS.is_dir() else []
ROIS = 4
GT = 2
IMAGE = (1, 3, 64, 64)
# The big VGG16 nets take seconds each for their fillers (fc6 alone: 103M weights).
SLOW = ("VGG16",)

STANDINS = {
    "rpn/proposal_layer.py": '''
        class ProposalLayer(caffe.Layer):
            """Stand-in: R fixed rois [0, x1, y1, x2, y2] inside the image (and scores)."""
            def setup(self, bottom, top):
                self.reshape(bottom, top)
            def reshape(self, bottom, top):
                top[0].reshape(R, 5)
                if len(top) > 1:
                    top[1].reshape(R, 1)
            def forward(self, bottom, top):
                top[0].data[...] = ROI_BOXES
                if len(top) > 1:
                    top[1].data[...] = 0.5
            def backward(self, top, propagate_down, bottom):
                pass
    ''',
    "rpn/anchor_target_layer.py": '''
        class AnchorTargetLayer(caffe.Layer):
            """Stand-in: labels in {-1, 0, 1} and box targets for each anchor."""
            def setup(self, bottom, top):
                self.reshape(bottom, top)
            def reshape(self, bottom, top):
                _, c, h, w = bottom[0].data.shape  # rpn_cls_score: 2 scores per anchor
                top[0].reshape(1, 1, c // 2 * h, w)
                for t in top[1:]:
                    t.reshape(1, 2 * c, h, w)
            def forward(self, bottom, top):
                top[0].data[...] = (np.arange(top[0].data.size) % 3 - 1).reshape(
                    top[0].data.shape)
                top[1].data[...] = 0.1
                for t in top[2:]:
                    t.data[...] = 1.0
            def backward(self, top, propagate_down, bottom):
                pass
    ''',
    "rpn/proposal_target_layer.py": '''
        class ProposalTargetLayer(caffe.Layer):
            """Stand-in: R rois, their labels and class-wise box targets and weights."""
            def setup(self, bottom, top):
                self.k = eval("{" + self.param_str + "}")["num_classes"]
                self.reshape(bottom, top)
            def reshape(self, bottom, top):
                top[0].reshape(R, 5)
                top[1].reshape(R)
                for t in top[2:]:
                    t.reshape(R, 4 * self.k)
            def forward(self, bottom, top):
                top[0].data[...] = ROI_BOXES
                top[1].data[...] = np.arange(R) % self.k
                top[2].data[...] = 0.1
                for t in top[3:]:
                    t.data[...] = 1.0
            def backward(self, top, propagate_down, bottom):
                pass
    ''',
    "oicr_layer/layer.py": '''
        class OICRLayer(caffe.Layer):
            """Stand-in: a label per roi (of rois, probabilities, image labels) and weights."""
            def setup(self, bottom, top):
                self.reshape(bottom, top)
            def reshape(self, bottom, top):
                n = bottom[0].data.shape[0]
                top[0].reshape(n)
                top[1].reshape(n)
            def forward(self, bottom, top):
                top[0].data[...] = np.arange(top[0].data.size) % 21
                top[1].data[...] = 0.5
            def backward(self, top, propagate_down, bottom):
                pass
    ''',
}
HEADER = f"""\
import caffe
import numpy as np

R = {ROIS}
ROI_BOXES = np.array([[0, 4 * i, 2 * i, 30 + 6 * i, 28 + 5 * i] for i in range(R)], np.float32)
"""


def _num_classes(net) -> int:
    for layer in net.layer:
        if layer.name == "cls_score":
            return layer.inner_product_param.num_output
    return 21


def _input_arrays(net, names: list[str], oicr: bool) -> dict[str, np.ndarray]:
    """Seeded values for the net's inputs (legacy inputs, Input layers, data-layer tops),
    shaped as the authors' RoIDataLayer and test scripts give them."""
    k = _num_classes(net)
    r = np.random.RandomState(10)
    boxes = np.array([[0, 4 * i, 2 * i, 30 + 6 * i, 28 + 5 * i] for i in range(ROIS)],
                     np.float32)
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "data":
            out[name] = r.randn(*IMAGE).astype(np.float32)
        elif name == "rois":
            out[name] = boxes
        elif name == "labels":
            out[name] = (r.rand(1, 20) < 0.2).astype(np.float32) if oicr \
                else (np.arange(ROIS) % k).astype(np.float32)
        elif name == "im_info":
            out[name] = np.array([[IMAGE[2], IMAGE[3], 1.0]], np.float32)
        elif name == "gt_boxes":
            out[name] = np.array([[4, 4, 40, 40, 1], [10, 20, 60, 50, 2]], np.float32)
        elif name == "bbox_targets":
            out[name] = r.randn(ROIS, 4 * k).astype(np.float32) * 0.1
        elif name.startswith("bbox_"):  # loss / inside / outside weights
            out[name] = np.ones((ROIS, 4 * k), np.float32)
        else:
            raise AssertionError(f"no value for input {name!r}")
    return out


def _inputs_of(net) -> list[str]:
    """Legacy inputs, Input layers' and bottomless Python layers' tops, in net order."""
    names = list(net.input)
    for layer in net.layer:
        if layer.type == "Input" or (layer.type == "Python" and not layer.bottom):
            names += list(layer.top)
    return names


def _authors_modules(net) -> list[str]:
    return sorted({layer.python_param.module for layer in net.layer
                   if layer.type == "Python" and layer.bottom})


# py-faster-rcnn's ZF test nets set loss_param on their Softmax (cls_prob), which Caffe
# ignores; caffe_fx ignores it too and says so (IgnoredFieldWarning).
IGNORED_FIELD = ("pascal_voc/ZF/fast_rcnn/test.prototxt",
                 "pascal_voc/ZF/faster_rcnn_alt_opt/faster_rcnn_test.pt",
                 "pascal_voc/ZF/faster_rcnn_end2end/test.prototxt")


def _params(nets: list[str]) -> list:
    return [pytest.param(n, marks=[pytest.mark.slow] if any(s in n for s in SLOW) else [])
            for n in nets]


def test_all_roi_pooling_nets_found(shared_models: Path) -> None:
    assert len(NETS) == 52, NETS


@pytest.mark.parametrize("rel", _params(NETS))
def test_net_compiles_and_runs(rel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                               ) -> None:
    path = MODELS / rel
    net = read_net(str(path))
    phase = "train" if "train" in path.name else "test"
    inputs = _input_arrays(net, _inputs_of(net), "oicr" in rel)
    shapes = {k: v.shape for k, v in inputs.items()}
    modules = _authors_modules(net)
    if modules:
        with pytest.raises(UnsupportedFieldError) as e:
            caffe_fx.compile(str(path), phase=phase, input_shapes=shapes)
        for module in modules:
            assert f"python_param.module = '{module}'" in str(e.value)
        for module in modules:
            file = tmp_path / (module.replace(".", "/") + ".py")
            file.parent.mkdir(parents=True, exist_ok=True)
            (file.parent / "__init__.py").touch()
            file.write_text(HEADER + textwrap.dedent(STANDINS[file.relative_to(tmp_path)
                                                              .as_posix()]))
        monkeypatch.syspath_prepend(str(tmp_path))
        for name in list(sys.modules):  # another test's stand-ins, from its tmp_path
            if name.split(".")[0] in {m.split(".")[0] for m in modules}:
                monkeypatch.delitem(sys.modules, name)
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", IgnoredFieldWarning)
        gm = caffe_fx.compile(str(path), phase=phase, input_shapes=shapes,
                              trust_python_layers=bool(modules))
    ignored = [str(w.message) for w in said if issubclass(w.category, IgnoredFieldWarning)]
    if rel.endswith(IGNORED_FIELD):
        assert len(ignored) == 1 and "layer 'cls_prob' (Softmax): loss_param" in ignored[0]
    else:
        assert ignored == []
    with torch.no_grad():
        outs = gm(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert outs
    for name, value in outs.items():
        assert torch.isfinite(value).all(), f"{rel}: {name} is not finite"
        if "loss" in name:
            assert float(value) >= 0.0, f"{rel}: {name} = {float(value)}"
    if "cls_prob" in outs:
        prob = outs["cls_prob"]
        assert prob.shape[0] == ROIS
        torch.testing.assert_close(prob.sum(1), torch.ones(ROIS))
