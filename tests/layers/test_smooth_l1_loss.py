"""SmoothL1Loss, both R-CNN forms, against a float64 NumPy model of the .cu files.

No Caffe we can run computes it: every fork's Forward_cpu is NOT_IMPLEMENTED (the oicr
overlay aborts), so the reference is written from the GPU code:
- rbgirshick/caffe-fast-rcnn branch fast-rcnn, src/caffe/layers/smooth_L1_loss_layer.cu
  (2 or 3 bottoms): d = w (b0 - b1), loss = sum f(d) / num, f at sigma 1; Backward_gpu
  gives +-f'(d) / num to bottoms 0 and 1 -- without the factor w of the derivative;
- branch faster-rcnn (and ppengtang/caffe): d = w_in (b0 - b1), loss = sum w_out
  f_sigma(d) / num; Backward_gpu +-w_in w_out f'_sigma(d) / num, the derivative.
The weights get no diff (the backward loops over bottoms 0 and 1 only).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import ShapeError, UnsupportedFieldError
from caffe_fx.ops import rcnn as R


def reference(b: list[np.ndarray], sigma: float = 1.0
              ) -> tuple[float, np.ndarray, np.ndarray]:
    """(loss, diff of bottom 0, diff of bottom 1) for a top diff of 1, in float64."""
    sigma2 = float(np.float32(sigma) * np.float32(sigma))  # sigma2_ is a Dtype
    pred, target = (x.astype(np.float64) for x in b[:2])
    d = pred - target
    if len(b) >= 3:
        d = b[2].astype(np.float64) * d
    small = np.abs(d) < 1.0 / sigma2
    err = np.where(small, 0.5 * d * d * sigma2, np.abs(d) - 0.5 / sigma2)
    slope = np.where(small, sigma2 * d, np.sign(d))
    if len(b) == 4:
        err = b[3] * err
        slope = slope * b[2] * b[3]
    num = pred.shape[0]
    return float(err.sum() / num), slope / num, -slope / num


def _net(nbottoms: int, shape: tuple[int, ...], extra: str = "",
         target_shape: tuple[int, ...] | None = None) -> str:
    names = ["pred", "target", "weight" if nbottoms == 3 else "inside", "outside"][:nbottoms]
    text = ""
    for n in names:
        dims = " ".join(f"dim: {d}" for d in (target_shape if n == "target" and target_shape
                                               else shape))
        text += (f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
                 f"{dims} }} }} }}\n")
    bottoms = " ".join(f'bottom: "{n}"' for n in names)
    return text + (f'layer {{ name: "loss_bbox" type: "SmoothL1Loss" {bottoms} top: "loss" '
                   f"{extra} }}\n")


def _inputs(nbottoms: int, shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    r = np.random.RandomState(seed)
    out = [(r.randn(*shape) * 1.5).astype(np.float32), (r.randn(*shape) * 1.5).astype(np.float32)]
    if nbottoms >= 3:  # R-CNN weights: mostly 0/1, here also fractional ones
        w = r.choice([0.0, 1.0, 0.5, 2.0], size=shape).astype(np.float32)
        out.append(w)
    if nbottoms == 4:
        out.append(r.choice([0.0, 1.0, 0.25], size=shape).astype(np.float32))
    return out


CASES = [  # (name, bottoms, shape, sigma or None, loss_weight)
    ("two_bottoms", 2, (4, 8), None, 1.0),
    ("fast_rcnn_weights", 3, (6, 84), None, 1.0),
    ("fast_rcnn_weights_4d", 3, (3, 8, 1, 1), None, 2.0),
    ("faster_rcnn_sigma3", 4, (2, 36, 3, 4), 3.0, 1.0),  # the RPN's sigma
    ("faster_rcnn_default_sigma", 4, (5, 12), None, 0.5),
    ("two_bottoms_sigma_half", 2, (3, 5), 0.5, 1.0),
]


@pytest.mark.parametrize("name, nbottoms, shape, sigma, loss_weight", CASES,
                         ids=[c[0] for c in CASES])
def test_matches_the_cu_reference(name, nbottoms, shape, sigma, loss_weight) -> None:
    extra = f"smooth_l1_loss_param {{ sigma: {sigma} }}" if sigma is not None else ""
    if loss_weight != 1.0:
        extra += f" loss_weight: {loss_weight}"
    gm = caffe_fx.compile(_net(nbottoms, shape, extra))
    b = _inputs(nbottoms, shape, seed=len(name))
    names = ["pred", "target", "weight" if nbottoms == 3 else "inside", "outside"][:nbottoms]
    x = {n: torch.from_numpy(v).requires_grad_(True) for n, v in zip(names, b)}
    out = gm(**x)["loss"]
    (out * loss_weight).backward()
    loss, d0, d1 = reference(b, 1.0 if sigma is None else sigma)
    assert abs(out.item() - loss) <= 1e-5 * max(abs(loss), 1e-30)
    for n, ref in (("pred", d0), ("target", d1)):
        ref = ref * loss_weight
        err = np.abs(x[n].grad.numpy() - ref).max() / np.abs(ref).max()
        assert err <= 1e-5, f"{name}: diff of {n} off by {err:.3g}"
    for n in names[2:]:
        assert x[n].grad is None


def test_fast_rcnn_backward_has_no_weight_factor() -> None:
    """Fast R-CNN's backward is f'(w d) / num: with w = 2 and |w d| >= 1 that is sign / num,
    where the derivative would give 2 sign / num."""
    pred = torch.tensor([[3.0, 0.2]], requires_grad=True)
    R.smooth_l1_loss_weighted(pred, torch.zeros(1, 2), torch.tensor([[2.0, 2.0]])).backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[1.0, 0.4]]))


def _f64(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 1.5).requires_grad_(True)


def test_gradcheck_two_and_four_bottoms() -> None:
    """Where Caffe's backward is the derivative (2 and 4 bottoms, any sigma)."""
    g = torch.Generator().manual_seed(3)
    w_in = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.5
    w_out = torch.rand(3, 4, generator=g, dtype=torch.float64)
    for sigma2 in (1.0, 9.0, 0.25):
        assert torch.autograd.gradcheck(
            lambda p, t: R.smooth_l1_loss(p, t, sigma2), (_f64(3, 4, seed=1), _f64(3, 4, seed=2)))
        assert torch.autograd.gradcheck(
            lambda p, t: R.smooth_l1_loss_in_out(p, t, w_in, w_out, sigma2),
            (_f64(3, 4, seed=4), _f64(3, 4, seed=5)))


def test_gradcheck_three_bottoms_with_binary_weights() -> None:
    """With Fast R-CNN's 0/1 weights its backward equals the derivative."""
    w = (torch.rand(4, 8, generator=torch.Generator().manual_seed(6)) < 0.5).double()
    out = R.smooth_l1_loss_weighted(_f64(4, 8, seed=7), _f64(4, 8, seed=8), w)
    assert type(out.grad_fn).__name__ == "CaffeSmoothL1WeightedBackward"
    assert torch.autograd.gradcheck(lambda p, t: R.smooth_l1_loss_weighted(p, t, w),
                                    (_f64(4, 8, seed=7), _f64(4, 8, seed=8)))


def test_three_bottoms_refuse_sigma() -> None:
    text = _net(3, (2, 4), "smooth_l1_loss_param { sigma: 3 }")
    with pytest.raises(UnsupportedFieldError, match=r"layer 'loss_bbox' \(SmoothL1Loss\): "
                                                    r"smooth_l1_loss_param.sigma = 3.0.*3 bottoms"):
        caffe_fx.compile(text)


def test_bottoms_of_another_shape_are_refused() -> None:
    with pytest.raises(ShapeError, match=r"layer 'loss_bbox' \(SmoothL1Loss\): bottoms of "
                                         r"shape \[\[2, 4\], \[2, 5\]\]"):
        caffe_fx.compile(_net(2, (2, 4), target_shape=(2, 5)))


@pytest.mark.parametrize("nbottoms", [2, 3, 4])
def test_script_and_export_give_the_same_values(nbottoms: int) -> None:
    extra = "smooth_l1_loss_param { sigma: 3 }" if nbottoms == 4 else ""
    gm = caffe_fx.compile(_net(nbottoms, (2, 8), extra))
    names = ["pred", "target", "weight" if nbottoms == 3 else "inside", "outside"][:nbottoms]
    x = {n: torch.from_numpy(v) for n, v in zip(names, _inputs(nbottoms, (2, 8), seed=9))}
    with torch.no_grad():
        ours = gm(**x)["loss"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scripted = torch.jit.script(gm)(**x)["loss"]
        exported = torch.export.export(gm, (), x).module()(**x)["loss"]
    torch.testing.assert_close(scripted, ours, rtol=0, atol=0)
    torch.testing.assert_close(exported, ours, rtol=0, atol=0)


def _published_layer(models, rel: str, name: str):
    from google.protobuf import text_format

    from caffe_fx.proto import caffe_pb2
    path = models / rel
    if not path.exists():
        pytest.skip(f"needs {path}")
    net = text_format.Parse(path.read_text(), caffe_pb2.NetParameter())
    return next(layer for layer in net.layer if layer.name == name)


@pytest.mark.parametrize("rel, name, sigma", [
    ("rbgirshick+fast-rcnn/models/CaffeNet/train.prototxt", "loss_bbox", 1.0),
    ("rbgirshick+py-faster-rcnn/models/pascal_voc/VGG_CNN_M_1024/faster_rcnn_end2end/"
     "train.prototxt", "rpn_loss_bbox", 3.0),
    ("rbgirshick+py-faster-rcnn/models/pascal_voc/VGG_CNN_M_1024/faster_rcnn_end2end/"
     "train.prototxt", "loss_bbox", 1.0),
])
def test_published_layers(shared_models, rel: str, name: str, sigma: float) -> None:
    """The nets' own SmoothL1Loss layers (read from ../shared/models), fed alone."""
    from google.protobuf import text_format
    layer = _published_layer(shared_models, rel, name)
    shape = (2, 36, 3, 4) if name.startswith("rpn") else (4, 84)
    b = _inputs(len(layer.bottom), shape, seed=11)
    text = "".join(f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
                   + " ".join(f"dim: {d}" for d in shape) + " } } }\n" for n in layer.bottom)
    gm = caffe_fx.compile(text + "layer {\n" + text_format.MessageToString(layer) + "}\n",
                          phase="train")
    x = {n: torch.from_numpy(v).requires_grad_(True) for n, v in zip(layer.bottom, b)}
    out = gm(**x)[layer.top[0]]
    out.backward()
    loss, d0, _ = reference(b, sigma)
    assert abs(out.item() - loss) <= 1e-5 * abs(loss)
    np.testing.assert_allclose(x[layer.bottom[0]].grad.numpy(), d0, rtol=0,
                               atol=1e-5 * np.abs(d0).max())
