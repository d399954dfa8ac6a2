"""SegNet's BN and Upsample against alexgkendall/caffe-segnet, run for real, and the
YOLO-style nearest Upsample (ChenYingpeng/darknet2caffe) against a float64 NumPy model.

tests/golden/segnet/*.npz (tools/make_segnet_goldens.py, CAFFE_ORACLE_FORK=segnet) hold
the fork's tops, bottom diffs, BN's scale and shift and their diffs, and the MAX Pooling
mask top Upsample reads.  compile() runs each case's prototxt with the fork's own field
names; plain torch.autograd on its output gives the diffs.

BN's LEARN backward is the derivative of its forward (gradcheck), except that its mean and
variance tops get no diff; Upsample's backward gathers the top diff at the mask, which is
the derivative only while the mask has no repeated index (the goldens show the fork's).
No oracle here has the YOLO Upsample: a NumPy model written from its Forward_cpu and
Backward_cpu loops, and gradcheck, stand in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import (CaffeFxError, IgnoredFieldWarning, InputError, ShapeError,
                             UnsupportedFieldError)
from caffe_fx.ops import segnet as S
from tests.golden.harness import assert_like_fork as _close, load_record as _load, relative_error

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "segnet"
CASES = sorted(GOLDEN.glob("*.npz"))


def _weights(rec: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    weights: dict[str, list[np.ndarray]] = {}
    for key in sorted(k for k in rec if k.startswith("param/")):
        _, layer, i = key.split("/")
        weights.setdefault(layer, []).append(rec[key])
        assert len(weights[layer]) == int(i) + 1
    return weights


def _run(rec: dict[str, np.ndarray]):
    """Compiles the case with the fork's params, runs it forward and, on the seeded top
    diffs, backward.  Returns (tops, {input: grad}, {"pdiff/<layer>/<i>": grad})."""
    inputs = {k[len("input/"):]: torch.from_numpy(v).requires_grad_(k != "input/mask")
              for k, v in rec.items() if k.startswith("input/")}
    tops = [k[len("data/"):] for k in rec if k.startswith("data/")]
    gm = caffe_fx.compile(str(rec["prototxt"]), weights=_weights(rec) or None, outputs=tops,
                          phase=str(rec["phase"]))
    out = gm(**inputs)
    seeds = [(out[t], torch.from_numpy(rec[f"topdiff/{t}"])) for t in tops
             if f"topdiff/{t}" in rec and out[t].requires_grad]
    torch.autograd.backward([o for o, _ in seeds], [s for _, s in seeds])
    params = dict(gm.named_parameters())
    pgrads = {f"pdiff/{spec.layer}/{spec.blob_index}": params[name].grad
              for name, spec in gm.meta["caffe"].param_specs.items() if name in params}
    return ({t: out[t].detach().numpy() for t in tops},
            {k: v.grad for k, v in inputs.items()}, pgrads)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_the_fork_forward_and_backward(path: Path) -> None:
    rec = _load(path)
    tol = 1e-4 if path.stem.startswith("net_") else 1e-5  # a whole net, or one layer
    tops, grads, pgrads = _run(rec)
    for top, ours in tops.items():
        _close(ours, rec[f"data/{top}"], f"{path.stem}: top {top}", tol)
    for key in (k for k in rec if k.startswith("diff/")):
        blob = key[len("diff/"):]
        ours = grads[blob]
        _close(np.zeros_like(rec[key]) if ours is None else ours.numpy(), rec[key],
               f"{path.stem}: diff of {blob}", tol)
    assert grads.get("mask") is None  # the mask bottom gets no diff
    assert set(pgrads) == {k for k in rec if k.startswith("pdiff/")}
    for key, ours in pgrads.items():
        _close(ours.numpy(), rec[key], f"{path.stem}: {key}", tol)


def test_goldens_cover_the_cases() -> None:
    names = {p.stem for p in CASES}
    assert len(names) == 22
    assert {"bn_learn_gaussian_stats", "bn_inference", "upsample_pad_out_hw", "upsample_hw",
            "pool_mask_ties", "net_segnet_encoder_decoder"} <= names


# ------------------------------------------------------------------------------- BN

@pytest.mark.parametrize("case", ["bn_learn_constant", "bn_learn_default_fillers",
                                  "bn_inference_train_phase"])
def test_bn_fillers_give_the_forks_blobs(case: str) -> None:
    """Without weights, scale_filler and shift_filler (constant 0 when unset) fill the
    (1, C, 1, 1) blobs as the fork's do; the top then equals the fork's."""
    rec = _load(GOLDEN / f"{case}.npz")
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=["out"])
    for i, name in enumerate(("scale", "shift")):
        ours = getattr(gm.get_submodule(case), name).detach().numpy()
        np.testing.assert_array_equal(ours, rec[f"param/{case}/{i}"])
    _close(gm(data=torch.from_numpy(rec["input/data"]))["out"].detach().numpy(), rec["data/out"],
           f"{case}: top")


def test_bn_learn_uses_batch_statistics_in_test_phase() -> None:
    """bn_mode LEARN ignores the phase: TEST normalises with the batch's own mean and
    variance, as the fork's test-phase golden shows (a TEST top of mean 0 per channel)."""
    rec = _load(GOLDEN / "bn_learn_constant.npz")
    assert str(rec["phase"]) == "test"
    tops, _, _ = _run(rec)  # compile(..., phase="test")
    for out in (rec["data/out"], tops["out"]):
        np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), [0.25] * 3, atol=1e-5)
        np.testing.assert_allclose(out.std(axis=(0, 2, 3)), [1.5] * 3, rtol=1e-4)
    _close(tops["out"], rec["data/out"], "out")


def test_bn_stat_tops_get_no_diff() -> None:
    """The golden seeds diffs on the mean and variance tops too; the fork ignores them,
    and so does compile()'s module (autograd of the same forward would not)."""
    rec = _load(GOLDEN / "bn_learn_gaussian_stats.npz")
    assert "topdiff/mean" in rec and "topdiff/var" in rec
    x = torch.from_numpy(rec["input/data"]).double().requires_grad_(True)
    scale, shift = (torch.from_numpy(rec[f"param/bn_learn_gaussian_stats/{i}"]).double()
                    for i in (0, 1))
    y, mean, var, _, _ = S._bn_learn(x, scale, shift)
    torch.autograd.backward([y, mean, var], [torch.from_numpy(rec[f"topdiff/{t}"]).double()
                                             for t in ("out", "mean", "var")])
    assert relative_error(x.grad.numpy(), rec["diff/data"]) > 1e-2
    _, grads, _ = _run(rec)
    _close(grads["data"].numpy(), rec["diff/data"], "the fork's backward")


@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (4, 3)])
def test_bn_learn_backward_is_the_derivative(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    c = shape[1]
    scale = torch.randn(1, c, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(1, c, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s, b: S.bn_learn(a, s, b)[0],
                                    (x, scale, shift))


def test_bn_inference_backward_is_the_derivative() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.randn(1, 3, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(1, 3, 1, 1, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(S.bn_inference, (x, scale, shift))


def _net(body: str, *shape: int, blob: str = "data") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'input: "{blob}" input_shape {{ {dims} }}\n' + body


def test_bn_inference_with_stat_tops_is_refused() -> None:
    net = _net('layer { name: "b" type: "BN" bottom: "data" top: "y" top: "m" '
               'bn_param { bn_mode: INFERENCE } }', 1, 2, 3, 3)
    with pytest.raises(UnsupportedFieldError, match=r"layer 'b' \(BN\): top count = 2 .*"
                       r"1 top with bn_mode INFERENCE"):
        caffe_fx.compile(net)


def test_bn_too_many_tops_or_axes_is_refused() -> None:
    four = _net('layer { name: "b" type: "BN" bottom: "data" top: "y" top: "m" top: "v" '
                'top: "w" }', 1, 2, 3, 3)
    with pytest.raises(CaffeFxError, match=r"layer 'b' \(BN\) has 4 tops; allowed: 1 to 3"):
        caffe_fx.compile(four)
    five = _net('layer { name: "b" type: "BN" bottom: "data" top: "y" }', 1, 2, 3, 3, 2)
    with pytest.raises(ShapeError, match=r"layer 'b' \(BN\).*allowed: 2 to 4 axes"):
        caffe_fx.compile(five)


# ---------------------------------------------------------------- Upsample (SegNet)

def _up(param: str, *shape: int) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return (f'input: "data" input_shape {{ {dims} }}\n'
            f'input: "mask" input_shape {{ {dims} }}\n'
            f'layer {{ name: "up" type: "Upsample" bottom: "data" bottom: "mask" top: "out" '
            f'upsample_param {{ {param} }} }}\n')


@pytest.mark.parametrize("param, match", [
    ("scale: 1", r"upsample_param.scale = 1 is not supported; supported: scale > 1"),
    ("scale_h: 2", r"scale_h and scale_w together are required"),
    ("scale: 2 scale_h: 2 scale_w: 2", r"scale_h and scale_w together are required"),
    ("upsample_h: 4", r"upsample_param.upsample_h = 4 is not supported; supported: "
                      r"upsample_h and upsample_w together"),
    ("upsample_h: 1 upsample_w: 4", r"upsample_h = 1 .*upsample_h > 1"),
    ("scale: 3 pad_out_h: true", r"pad_out_h = True .*only with scale_h == 2"),
    ("scale_h: 2 scale_w: 3 pad_out_w: true", r"pad_out_w = True .*only with scale_w == 2"),
])
def test_upsample_bad_fields_are_refused(param: str, match: str) -> None:
    with pytest.raises(CaffeFxError, match=r"layer 'up' \(Upsample\).*" + match):
        caffe_fx.compile(_up(param, 1, 2, 3, 3))


def test_upsample_h_and_w_override_scale_and_pad_out_and_say_so() -> None:
    with pytest.warns(IgnoredFieldWarning, match=r"layer 'up' \(Upsample\): upsample_param."
                      r"scale, pad_out_h set with upsample_h and upsample_w; ignored"):
        gm = caffe_fx.compile(_up("upsample_h: 5 upsample_w: 6 scale: 3 pad_out_h: true",
                                  1, 2, 3, 3))
    assert gm.meta["caffe"].blob_shapes["out"] == (1, 2, 5, 6)


def test_upsample_mask_of_another_shape_is_refused() -> None:
    net = ('input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
           'input: "mask" input_shape { dim: 1 dim: 2 dim: 3 dim: 4 }\n'
           'layer { name: "up" type: "Upsample" bottom: "data" bottom: "mask" top: "out" }\n')
    with pytest.raises(ShapeError, match=r"layer 'up' \(Upsample\): bottoms of shapes "
                       r"\[1, 2, 3, 3\] and \[1, 2, 3, 4\]"):
        caffe_fx.compile(net)


def test_upsample_mask_index_out_of_the_top_is_an_error() -> None:
    """The fork's LOG(FATAL) on an index past the top plane: an InputError naming it."""
    gm = caffe_fx.compile(_up("scale: 2", 1, 1, 2, 2))
    mask = torch.tensor([[[[0.0, 3.0], [9.0, 16.0]]]])
    with pytest.raises(InputError, match=r"layer 'up' \(Upsample\): mask index 16 is outside "
                       r"the top plane of 16 pixels"):
        gm(data=torch.ones(1, 1, 2, 2), mask=mask)
    with pytest.raises(InputError, match="mask index -1"):
        gm(data=torch.ones(1, 1, 2, 2), mask=-mask - 1)


def test_unpool_backward_gathers() -> None:
    """Unique indices: the gather is the derivative (gradcheck).  Repeated ones: the
    forward keeps the last writer, the backward gives every writer the diff (the
    upsample_duplicate_indices golden is the fork's)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    unique = torch.stack([torch.randperm(20, generator=g)[:6] for _ in range(4)])
    mask = unique.reshape(2, 2, 2, 3).double()
    assert torch.autograd.gradcheck(
        lambda a: S.upsample_unpool(a, mask, 0, 0, False, False, 4, 5), (x,))
    dup = torch.zeros(1, 1, 1, 3, dtype=torch.float64)
    x = torch.tensor([[[[1.0, 2.0, 3.0]]]], dtype=torch.float64, requires_grad=True)
    y = S.upsample_unpool(x, dup, 2, 2, False, False, 0, 0)
    assert y[0, 0, 0, 0].item() == 3.0 and y.detach().sum().item() == 3.0
    y.backward(torch.full_like(y, 2.0))
    assert x.grad.tolist() == [[[[2.0, 2.0, 2.0]]]]


# ------------------------------------------------------------ Upsample (YOLO, nearest)

def _nearest_numpy(x: np.ndarray, scale: int) -> np.ndarray:
    """darknet2caffe's UpsampleLayer::Forward_cpu, in float64."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h * scale, w * scale))
    for i in range(h * scale):
        for j in range(w * scale):
            out[:, :, i, j] = x[:, :, i // scale, j // scale]
    return out


def _nearest_backward_numpy(td: np.ndarray, scale: int) -> np.ndarray:
    """Its Backward_cpu: each bottom pixel sums its scale x scale block of diffs."""
    n, c, h, w = td.shape[0], td.shape[1], td.shape[2] // scale, td.shape[3] // scale
    dx = np.zeros((n, c, h, w))
    for i in range(h):
        for j in range(w):
            for a in range(scale):
                for b in range(scale):
                    dx[:, :, i, j] += td[:, :, i * scale + b, j * scale + a]
    return dx


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_nearest_upsample_matches_the_numpy_model(scale: int) -> None:
    r = np.random.RandomState(scale)
    x = r.randn(2, 3, 3, 4)
    net = _net('layer { name: "up" type: "Upsample" bottom: "data" top: "out" '
               f'upsample_param {{ scale: {scale} }} }}', 2, 3, 3, 4)
    gm = caffe_fx.compile(net)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = gm(data=xt)["out"]
    np.testing.assert_array_equal(y.detach().numpy(), _nearest_numpy(x, scale))
    td = r.randn(*y.shape)
    y.backward(torch.from_numpy(td))
    np.testing.assert_allclose(xt.grad.numpy(), _nearest_backward_numpy(td, scale),
                               rtol=1e-12, atol=1e-12)


def test_nearest_upsample_gradcheck() -> None:
    x = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: S.upsample_nearest(a, 2), (x,))


def test_nearest_upsample_unset_scale_is_the_forks_default_one() -> None:
    net = _net('layer { name: "up" type: "Upsample" bottom: "data" top: "out" }', 1, 2, 3, 3)
    x = torch.randn(1, 2, 3, 3)
    assert torch.equal(caffe_fx.compile(net)(data=x)["out"], x)


@pytest.mark.parametrize("param", ["scale: 2 pad_out_h: true", "upsample_h: 4 upsample_w: 4",
                                   "scale_h: 2 scale_w: 2"])
def test_nearest_upsample_refuses_segnet_fields(param: str) -> None:
    net = _net('layer { name: "up" type: "Upsample" bottom: "data" top: "out" '
               f'upsample_param {{ {param} }} }}', 1, 2, 3, 3)
    with pytest.raises(UnsupportedFieldError, match=r"layer 'up' \(Upsample\): "
                       r"upsample_param\.\w+ = .* only upsample_param.scale with one bottom"):
        caffe_fx.compile(net)


def test_nearest_upsample_bad_scale_or_shape_is_refused() -> None:
    zero = _net('layer { name: "up" type: "Upsample" bottom: "data" top: "out" '
                'upsample_param { scale: 0 } }', 1, 2, 3, 3)
    with pytest.raises(UnsupportedFieldError, match=r"upsample_param.scale = 0 .*scale >= 1"):
        caffe_fx.compile(zero)
    flat = _net('layer { name: "up" type: "Upsample" bottom: "data" top: "out" '
                'upsample_param { scale: 2 } }', 2, 3)
    with pytest.raises(ShapeError, match=r"layer 'up' \(Upsample\): bottom of shape \[2, 3\]"):
        caffe_fx.compile(flat)


# ----------------------------------------------------------- scripting and export

_SEGNET = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1
                      weight_filler { type: "gaussian" std: 0.3 } } }
layer { name: "bn" type: "BN" bottom: "conv" top: "conv" top: "mean" top: "var"
  bn_param { scale_filler { type: "constant" value: 1.2 }
             shift_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" top: "mask"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "bn2" type: "BN" bottom: "pool" top: "pool"
  bn_param { bn_mode: INFERENCE scale_filler { type: "constant" value: 2 } } }
layer { name: "up" type: "Upsample" bottom: "pool" bottom: "mask" top: "up"
  upsample_param { scale: 2 pad_out_h: true } }
layer { name: "near" type: "Upsample" bottom: "pool" top: "near" upsample_param { scale: 2 } }
"""


def test_script_and_export_give_the_eager_values() -> None:
    gm = caffe_fx.compile(_net(_SEGNET, 2, 2, 5, 6), outputs=["up", "near", "mean", "var"])
    x = torch.randn(2, 2, 5, 6)
    want = gm(data=x)
    assert want["up"].shape == (2, 3, 5, 6) and want["near"].shape == (2, 3, 6, 6)
    scripted = torch.jit.script(gm)(data=x)
    exported = torch.export.export(gm, (), {"data": x}).module()(data=x)
    for got in (scripted, exported):
        assert set(got) == set(want)
        for k, v in want.items():
            torch.testing.assert_close(got[k], v, rtol=0, atol=0)
