"""Interp (DeepLab v2's, as hszhao/PSPNet ships it) against a float64 reference written
from the fork's sources (no oracle here runs it): src/caffe/layers/interp_layer.cpp for the
output size (shrink alone, zoom alone, height and width, both factors, in that order) and
pad_beg/pad_end as crops, src/caffe/util/interp.cpp's caffe_cpu_interp2 and
caffe_cpu_interp2_backward loops for the values (their float ratio and weights).
compile() is checked against it forward and backward, the op by gradcheck, the fork's
CHECKs as caffe_fx errors, and the net scripts and exports."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import (IgnoredFieldWarning, NetDefinitionError, ShapeError,
                             UnsupportedFieldError)
from caffe_fx.ops import interp as I
from tests.golden.harness import relative_error

f32 = np.float32


def ref_out_size(h_in: int, w_in: int, p: dict[str, int]) -> tuple[int, int]:
    """InterpLayer::Reshape, with has_*() as "given in p"."""
    pb, pe = p.get("pad_beg", 0), p.get("pad_end", 0)
    h_eff, w_eff = h_in + pb + pe, w_in + pb + pe
    shrink, zoom = "shrink_factor" in p, "zoom_factor" in p
    if shrink and not zoom:
        s = p["shrink_factor"]
        return (h_eff - 1) // s + 1, (w_eff - 1) // s + 1
    if zoom and not shrink:
        z = p["zoom_factor"]
        return h_eff + (h_eff - 1) * (z - 1), w_eff + (w_eff - 1) * (z - 1)
    if "height" in p and "width" in p:
        return p["height"], p["width"]
    s, z = p["shrink_factor"], p["zoom_factor"]
    h, w = (h_eff - 1) // s + 1, (w_eff - 1) // s + 1
    return h + (h - 1) * (z - 1), w + (w - 1) * (z - 1)


def _coeffs(n1: int, n2: int, o: int) -> tuple[int, int, float, float]:
    """interp.cpp's (index, +1 or 0, lambda0, lambda1) of output row o: the ratio and the
    source position in float, the weights as float (Dtype) from them."""
    r = f32(n1 - 1) / f32(n2 - 1) if n2 > 1 else f32(0)
    pos = f32(r * f32(o))
    i = int(pos)
    step = 1 if i < n1 - 1 else 0
    lam1 = f32(pos - f32(i))
    return i, step, float(f32(1) - lam1), float(lam1)


def ref_forward(x: np.ndarray, p: dict[str, int]) -> np.ndarray:
    n_, c_, h_in, w_in = x.shape
    off = -p.get("pad_beg", 0)
    h1 = h_in + p.get("pad_beg", 0) + p.get("pad_end", 0)
    w1 = w_in + p.get("pad_beg", 0) + p.get("pad_end", 0)
    h2, w2 = ref_out_size(h_in, w_in, p)
    top = np.zeros((n_, c_, h2, w2))
    for n in range(n_):
        for c in range(c_):
            d1 = x[n, c]
            if h1 == h2 and w1 == w2:  # the special case: just copy
                top[n, c] = d1[off:off + h1, off:off + w1]
                continue
            for oh in range(h2):
                i, hp, h0l, h1l = _coeffs(h1, h2, oh)
                for ow in range(w2):
                    j, wp, w0l, w1l = _coeffs(w1, w2, ow)
                    y, xx = off + i, off + j
                    top[n, c, oh, ow] = (
                        h0l * (w0l * d1[y, xx] + w1l * d1[y, xx + wp])
                        + h1l * (w0l * d1[y + hp, xx] + w1l * d1[y + hp, xx + wp]))
    return top


def ref_backward(x_shape: tuple[int, ...], td: np.ndarray, p: dict[str, int]) -> np.ndarray:
    n_, c_, h_in, w_in = x_shape
    off = -p.get("pad_beg", 0)
    h1 = h_in + p.get("pad_beg", 0) + p.get("pad_end", 0)
    w1 = w_in + p.get("pad_beg", 0) + p.get("pad_end", 0)
    h2, w2 = td.shape[2:]
    diff = np.zeros(x_shape)  # caffe_set(0), then the adjoint accumulates
    for n in range(n_):
        for c in range(c_):
            d1 = diff[n, c]
            if h1 == h2 and w1 == w2:
                d1[off:off + h1, off:off + w1] += td[n, c]
                continue
            for oh in range(h2):
                i, hp, h0l, h1l = _coeffs(h1, h2, oh)
                for ow in range(w2):
                    j, wp, w0l, w1l = _coeffs(w1, w2, ow)
                    y, xx, g = off + i, off + j, td[n, c, oh, ow]
                    d1[y, xx] += h0l * w0l * g
                    d1[y, xx + wp] += h0l * w1l * g
                    d1[y + hp, xx] += h1l * w0l * g
                    d1[y + hp, xx + wp] += h1l * w1l * g
    return diff


def _net(shape: tuple[int, ...], params: dict[str, int], top: str = "out") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    fields = " ".join(f"{k}: {v}" for k, v in params.items())
    return (f'input: "data" input_shape {{ {dims} }}\n'
            f'layer {{ name: "interp" type: "Interp" bottom: "data" top: "{top}"\n'
            f'  interp_param {{ {fields} }} }}\n')


CASES = {
    "zoom_8": ((1, 2, 4, 3), dict(zoom_factor=8)),  # DeepLab's upsampling of the scores
    "shrink_8": ((1, 2, 17, 13), dict(shrink_factor=8)),  # DeepLab's label shrink
    "shrink_3_uneven": ((2, 1, 8, 10), dict(shrink_factor=3)),
    "size_up": ((2, 2, 5, 6), dict(height=11, width=9)),  # the fork's own test
    "size_down": ((1, 2, 9, 7), dict(height=4, width=5)),
    "size_from_1x1": ((1, 3, 1, 1), dict(height=6, width=5)),  # PSPNet's pyramid branch
    "size_to_1x1": ((1, 2, 4, 5), dict(height=1, width=1)),
    "size_same_copies": ((1, 2, 4, 5), dict(height=4, width=5)),
    "shrink_then_zoom": ((1, 2, 9, 11), dict(shrink_factor=2, zoom_factor=3)),
    "crop_zoom": ((1, 2, 6, 7), dict(zoom_factor=2, pad_beg=-1, pad_end=-2)),
    "crop_size": ((1, 1, 7, 6), dict(height=5, width=8, pad_beg=-2)),
    "crop_copy": ((1, 1, 6, 6), dict(height=4, width=4, pad_beg=-1, pad_end=-1)),
    # Reshape tests shrink alone, then zoom alone, before height and width.
    "shrink_over_size": ((1, 1, 9, 9), dict(shrink_factor=2, height=3, width=3)),
    "zoom_over_size": ((1, 1, 3, 4), dict(zoom_factor=2, height=3, width=3)),
    "size_over_both": ((1, 1, 5, 5), dict(shrink_factor=2, zoom_factor=3, height=7, width=2)),
    "legacy_3d": ((2, 3, 5), dict(height=2, width=4)),  # width() is 1: top N x C x 2 x 4
}


def _x4(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape) + (1,) * (4 - len(shape))


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_compiled_interp_matches_the_forks_forward_and_backward(case: str) -> None:
    shape, params = CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng.normal(size=shape).astype(f32)
    gm = caffe_fx.compile(_net(shape, params))
    xt = torch.from_numpy(x).requires_grad_(True)
    out = gm(data=xt)["out"]
    want = ref_forward(x.astype(np.float64).reshape(_x4(shape)), params)
    assert tuple(out.shape) == want.shape
    assert relative_error(out.detach().numpy(), want) <= 1e-5
    td = rng.normal(size=want.shape).astype(f32)
    out.backward(torch.from_numpy(td))
    want_diff = ref_backward(_x4(shape), td.astype(np.float64), params).reshape(shape)
    assert relative_error(xt.grad.numpy(), want_diff) <= 1e-5


def test_sizes_are_the_forks_rules() -> None:
    """A few sizes worked out by hand from Reshape: DeepLab's 41 -> zoom 8 -> 321 and
    321 -> shrink 8 -> 41; PSPNet's 60 -> 473 by height and width."""
    for shape, params, want in [((1, 1, 41, 41), dict(zoom_factor=8), (321, 321)),
                                ((1, 1, 321, 321), dict(shrink_factor=8), (41, 41)),
                                ((1, 1, 60, 60), dict(height=473, width=473), (473, 473)),
                                ((1, 1, 10, 12), dict(shrink_factor=4, zoom_factor=2), (5, 5)),
                                ((1, 1, 8, 8), dict(zoom_factor=1, pad_beg=-1, pad_end=-2),
                                 (5, 5))]:
        assert ref_out_size(shape[2], shape[3], params) == want
        out = caffe_fx.compile(_net(shape, params))(data=torch.zeros(shape))["out"]
        assert tuple(out.shape[2:]) == want, params


def test_cropped_border_gets_no_diff() -> None:
    params = dict(zoom_factor=3, pad_beg=-1, pad_end=-1)
    gm = caffe_fx.compile(_net((1, 1, 5, 5), params))
    x = torch.randn(1, 1, 5, 5, requires_grad=True)
    gm(data=x)["out"].sum().backward()
    g = x.grad[0, 0]
    assert bool((g[0] == 0).all() and (g[-1] == 0).all() and (g[:, 0] == 0).all()
                and (g[:, -1] == 0).all())
    assert bool((g[1:-1, 1:-1] > 0).all())


def test_autograd_in_float64_is_the_forks_backward_and_passes_gradcheck() -> None:
    params = dict(height=5, width=7, pad_beg=-1)
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(size=(2, 2, 4, 5))).requires_grad_(True)
    kwargs = dict(mode=I.SIZE, height=5, width=7, pad_beg=-1)
    out = I.interp(x, **kwargs)
    td = rng.normal(size=tuple(out.shape))
    out.backward(torch.from_numpy(td))
    np.testing.assert_allclose(x.grad.numpy(), ref_backward((2, 2, 4, 5), td, params),
                               rtol=1e-6, atol=1e-6)  # the fork's weights are float
    fresh = x.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: I.interp(t, **kwargs), (fresh,))
    assert torch.autograd.gradcheck(
        lambda t: I.interp(t, mode=I.SHRINK_ZOOM, shrink=2, zoom=3, pad_end=-1), (fresh,))


def test_the_output_follows_the_input_size_except_for_height_and_width() -> None:
    zoom = caffe_fx.compile(_net((1, 2, 4, 4), dict(zoom_factor=2)))
    assert tuple(zoom(data=torch.zeros(1, 2, 6, 3))["out"].shape) == (1, 2, 11, 5)
    size = caffe_fx.compile(_net((1, 2, 4, 4), dict(height=3, width=5)))
    assert tuple(size(data=torch.zeros(2, 2, 9, 9))["out"].shape) == (2, 2, 3, 5)
    crop = caffe_fx.compile(_net((1, 1, 6, 6), dict(zoom_factor=2, pad_beg=-2, pad_end=-2)))
    with pytest.raises(ShapeError, match=r"layer 'interp' \(Interp\): bottom of shape "
                                         r"\[1, 1, 4, 4\] cropped.*leaves 0 x 0"):
        crop(data=torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("params, error, message", [
    (dict(zoom_factor=2, pad_beg=1), UnsupportedFieldError,
     r"interp_param.pad_beg = 1 is not supported.*non-pos padding"),
    (dict(zoom_factor=2, pad_end=2), UnsupportedFieldError, r"interp_param.pad_end = 2"),
    (dict(), NetDefinitionError, r"interp_param gives no output size"),
    (dict(height=4), NetDefinitionError, r"height and width together"),
    (dict(zoom_factor=0), UnsupportedFieldError, r"interp_param.zoom_factor = 0.*1 or more"),
    (dict(shrink_factor=-1), UnsupportedFieldError, r"interp_param.shrink_factor = -1"),
    (dict(shrink_factor=2, zoom_factor=0), UnsupportedFieldError, r"zoom_factor = 0"),
    (dict(height=0, width=4), UnsupportedFieldError, r"interp_param.height = 0"),
    (dict(height=4, width=-3), UnsupportedFieldError, r"interp_param.width = -3"),
    (dict(zoom_factor=2, pad_beg=-3, pad_end=-3), ShapeError, r"leaves 0 x 0"),
], ids=["pad_beg_positive", "pad_end_positive", "no_size", "height_alone", "zoom_0",
        "shrink_negative", "both_zoom_0", "height_0", "width_negative", "cropped_away"])
def test_the_forks_checks_are_refused(params, error, message) -> None:
    with pytest.raises(error, match=r"layer 'interp' \(Interp\)") as e:
        caffe_fx.compile(_net((1, 2, 6, 6), params))
    assert e.match(message)


@pytest.mark.parametrize("case", ["shrink_over_size", "zoom_over_size"])
def test_height_and_width_under_one_factor_are_ignored_and_said(case: str) -> None:
    shape, params = CASES[case]
    with pytest.warns(IgnoredFieldWarning, match=r"layer 'interp' \(Interp\): "
                      r"interp_param.height and width set with a shrink/zoom factor; ignored"):
        caffe_fx.compile(_net(shape, params))


def test_height_and_width_over_both_factors_warn_of_nothing() -> None:
    shape, params = CASES["size_over_both"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredFieldWarning)
        caffe_fx.compile(_net(shape, params))


def test_five_axes_and_in_place_are_refused() -> None:
    with pytest.raises(ShapeError, match=r"\(Interp\): bottom of shape \[1, 1, 2, 2, 2\]"):
        caffe_fx.compile(_net((1, 1, 2, 2, 2), dict(zoom_factor=2)))
    with pytest.raises(NetDefinitionError, match=r"\(Interp\) cannot work in place"):
        caffe_fx.compile(_net((1, 1, 2, 2), dict(zoom_factor=2), top="data"))


def test_interp_net_scripts_and_exports() -> None:
    gm = caffe_fx.compile(_net((1, 2, 6, 5), dict(zoom_factor=3, pad_beg=-1)))
    x = torch.randn(1, 2, 6, 5, generator=torch.Generator().manual_seed(0))
    want = gm(data=x)["out"]
    torch.testing.assert_close(torch.jit.script(gm)(data=x)["out"], want)
    torch.testing.assert_close(torch.export.export(gm, (), {"data": x}).module()(data=x)["out"],
                               want)
