"""Axpy (hujie-frank/SENet) against a float64 reference written from the fork's
src/caffe/layers/axpy_layer.cpp (no oracle here runs it): Forward_cpu copies y into the
top, then caffe_axpy adds a[n, c] * x[n, c] per item and channel; Backward_cpu gives
a's diff the gemv of td * x over the spatial axes, x's a * td and y's td.  compile() is
checked against it forward and backward, the op by gradcheck, Reshape's CHECKs as
caffe_fx errors, and the net scripts and exports."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import NetDefinitionError, ShapeError
from caffe_fx.ops import axpy as A
from tests.golden.harness import relative_error


def ref_forward(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n_, c_ = x.shape[:2]
    scale = a.reshape(-1)  # scale_data[n * C + c]
    top = y.reshape(n_, c_, -1).astype(np.float64).copy()  # caffe_copy(bottom[2])
    xs = x.reshape(n_, c_, -1)
    for n in range(n_):
        for c in range(c_):
            top[n, c] += scale[n * c_ + c] * xs[n, c]  # caffe_axpy
    return top.reshape(x.shape)


def ref_backward(a: np.ndarray, x: np.ndarray, td: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_, c_ = x.shape[:2]
    spatial = int(np.prod(x.shape[2:], dtype=np.int64))
    x_diff = (td * x).reshape(n_ * c_, spatial)  # caffe_mul(top_diff, x_data, x_diff)
    a_diff = np.zeros(n_ * c_)
    for r in range(n_ * c_):  # gemv with the spatial sum multiplier
        for s in range(spatial):
            a_diff[r] += x_diff[r, s]
    scale = a.reshape(-1)
    x_diff = np.empty_like(td.reshape(n_, c_, spatial))
    for n in range(n_):
        for c in range(c_):
            x_diff[n, c] = scale[n * c_ + c] * td.reshape(n_, c_, spatial)[n, c]
    return a_diff.reshape(a.shape), x_diff.reshape(x.shape), td.copy()


def _net(a: tuple[int, ...], x: tuple[int, ...]) -> str:
    def shape(s):
        return " ".join(f"dim: {d}" for d in s)
    return (f'input: "a" input_shape {{ {shape(a)} }}\n'
            f'input: "x" input_shape {{ {shape(x)} }}\n'
            f'input: "y" input_shape {{ {shape(x)} }}\n'
            'layer { name: "axpy" type: "Axpy" bottom: "a" bottom: "x" bottom: "y" '
            'top: "out" }\n')


SHAPES = {
    "nc_nchw": ((2, 3), (2, 3, 4, 5)),
    "nc11_nchw": ((2, 3, 1, 1), (2, 3, 4, 5)),  # SENet's: the sigmoid of a 1 x 1 conv
    "nc_nc": ((3, 4), (3, 4)),
    "nc1_nch": ((2, 3, 1), (2, 3, 6)),
}


def _inputs(a_shape, x_shape, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.uniform(-1, 1, a_shape), "x": rng.normal(size=x_shape),
            "y": rng.normal(size=x_shape), "td": rng.normal(size=x_shape)}


@pytest.mark.parametrize("case", SHAPES, ids=list(SHAPES))
def test_compiled_axpy_matches_the_forks_forward_and_backward(case: str) -> None:
    a_shape, x_shape = SHAPES[case]
    v = _inputs(a_shape, x_shape)
    f32 = {k: np.asarray(v[k], np.float32) for k in v}
    gm = caffe_fx.compile(_net(a_shape, x_shape))
    ins = {k: torch.from_numpy(f32[k]).requires_grad_(True) for k in ("a", "x", "y")}
    out = gm(**ins)["out"]
    want = ref_forward(*(f32[k].astype(np.float64) for k in ("a", "x", "y")))
    assert out.shape == want.shape
    assert relative_error(out.detach().numpy(), want) <= 1e-5
    out.backward(torch.from_numpy(f32["td"]))
    da, dx, dy = ref_backward(f32["a"].astype(np.float64), f32["x"].astype(np.float64),
                              f32["td"].astype(np.float64))
    for name, want_diff in (("a", da), ("x", dx), ("y", dy)):
        got = ins[name].grad.numpy()
        assert got.shape == want_diff.shape
        assert relative_error(got, want_diff) <= 1e-5, f"diff of {name}"


def test_autograd_in_float64_is_the_forks_backward_and_passes_gradcheck() -> None:
    v = _inputs((2, 3, 1, 1), (2, 3, 2, 3), seed=1)
    t = {k: torch.from_numpy(v[k]).requires_grad_(True) for k in ("a", "x", "y")}
    A.axpy(t["a"], t["x"], t["y"]).backward(torch.from_numpy(v["td"]))
    want = ref_backward(v["a"], v["x"], v["td"])
    for name, w in zip(("a", "x", "y"), want):
        np.testing.assert_allclose(t[name].grad.numpy(), w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(A.axpy(t["a"], t["x"], t["y"]).detach().numpy(),
                               ref_forward(v["a"], v["x"], v["y"]), rtol=1e-12)
    fresh = [torch.from_numpy(v[k]).requires_grad_(True) for k in ("a", "x", "y")]
    assert torch.autograd.gradcheck(A.axpy, fresh)


@pytest.mark.parametrize("a_shape, x_shape, message", [
    ((3, 3), (2, 3, 4, 4), r"has 3 items.*CHECK_EQ\(bottom\[0\]->shape\(0\)"),
    ((2, 4), (2, 3, 4, 4), r"has 4 channels.*CHECK_EQ\(bottom\[0\]->shape\(1\)"),
    ((2, 3, 2, 1), (2, 3, 4, 4), r"one value per item and channel"),
    ((2, 3, 4), (2, 3, 4), r"one value per item and channel"),  # the fork's gemv overruns
    ((2,), (2, 3), r"need 2 or more axes"),
], ids=["items", "channels", "spatial_scale", "three_axis_scale", "one_axis"])
def test_reshapes_checks_are_refused_at_compile_time(a_shape, x_shape, message) -> None:
    with pytest.raises(ShapeError, match=r"layer 'axpy' \(Axpy\)") as e:
        caffe_fx.compile(_net(a_shape, x_shape))
    assert e.match(message)


def test_x_and_y_must_have_one_shape() -> None:
    net = _net((2, 3), (2, 3, 4, 4)).replace(
        'input: "y" input_shape { dim: 2 dim: 3 dim: 4 dim: 4 }',
        'input: "y" input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }')
    with pytest.raises(ShapeError, match=r"\(Axpy\).*bottom\[2\] \(y\) of shape \[2, 3, 4, 5\]"
                                         r".*CHECK\(bottom\[1\]->shape\(\) == bottom\[2\]"):
        caffe_fx.compile(net)


def test_a_forward_on_other_shapes_is_checked_as_reshape_checks() -> None:
    gm = caffe_fx.compile(_net((2, 3), (2, 3, 4, 4)))
    out = gm(a=torch.ones(1, 3), x=torch.ones(1, 3, 5, 5), y=torch.zeros(1, 3, 5, 5))["out"]
    assert out.shape == (1, 3, 5, 5) and bool((out == 1).all())  # shapes stay free
    with pytest.raises(ShapeError, match=r"layer 'axpy' \(Axpy\): bottom\[0\].*has 2 items"):
        gm(a=torch.ones(2, 3), x=torch.ones(1, 3, 5, 5), y=torch.zeros(1, 3, 5, 5))


def test_in_place_on_the_scale_is_refused() -> None:
    net = _net((2, 3), (2, 3, 4, 4)).replace('top: "out"', 'top: "a"')
    with pytest.raises(NetDefinitionError, match=r"layer 'axpy' \(Axpy\) cannot work in place"):
        caffe_fx.compile(net)


def test_axpy_net_scripts_and_exports() -> None:
    gm = caffe_fx.compile(_net((2, 3, 1, 1), (2, 3, 4, 4)))
    g = torch.Generator().manual_seed(3)
    ins = {"a": torch.rand(2, 3, 1, 1, generator=g), "x": torch.randn(2, 3, 4, 4, generator=g),
           "y": torch.randn(2, 3, 4, 4, generator=g)}
    want = gm(**ins)["out"]
    torch.testing.assert_close(torch.jit.script(gm)(**ins)["out"], want)
    torch.testing.assert_close(torch.export.export(gm, (), ins).module()(**ins)["out"], want)
    with pytest.raises(torch.jit.Error, match=r"layer 'axpy' \(Axpy\).*has 1 items"):
        torch.jit.script(gm)(a=ins["a"][:1], x=ins["x"], y=ins["y"])
