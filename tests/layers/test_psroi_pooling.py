"""PSROIPooling (R-FCN) against a float64 NumPy model of ppengtang/caffe's
psroi_pooling_layer.cu.

No Caffe we can run computes it: the fork's Forward_cpu is NOT_IMPLEMENTED (the oicr overlay
aborts), so `reference` is PSROIPoolingForward and PSROIPoolingBackwardAtomic loop by loop:
roi corners round(x1) * spatial_scale and (round(x2) + 1) * spatial_scale in Dtype, sizes at
least 0.1, bin edges floor / ceil of ph * bin + start (one rounding: nvcc's fma), clipped;
the average of channel (ctop * G + ph) * G + pw; backward spreads top_diff / bin_area.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import InputError, ShapeError, UnsupportedFieldError
from caffe_fx.ops import psroi_pool as P


def _c_round(v: float) -> float:
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def _bins(roi: np.ndarray, dt: type, g: int, scale: float, h: int, w: int
          ) -> list[tuple[int, int, int, int]]:
    """(hstart, hend, wstart, wend) of each bin (ph, pw), ph-major, as the .cu gives them."""
    s = dt(scale)
    start_w, start_h = dt(_c_round(float(roi[1]))) * s, dt(_c_round(float(roi[2]))) * s
    end_w, end_h = dt(_c_round(float(roi[3])) + 1.0) * s, dt(_c_round(float(roi[4])) + 1.0) * s
    size_w = dt(max(float(end_w - start_w), 0.1))  # max(Dtype, double), stored in Dtype
    size_h = dt(max(float(end_h - start_h), 0.1))
    bin_h, bin_w = size_h / dt(g), size_w / dt(g)

    def fma(a: int, b: float, c: float) -> float:  # one rounding, to Dtype
        return float(dt(float(a) * float(b) + float(c)))

    out = []
    for ph in range(g):
        for pw in range(g):
            hs = min(max(math.floor(fma(ph, bin_h, start_h)), 0), h)
            he = min(max(math.ceil(fma(ph + 1, bin_h, start_h)), 0), h)
            ws = min(max(math.floor(fma(pw, bin_w, start_w)), 0), w)
            we = min(max(math.ceil(fma(pw + 1, bin_w, start_w)), 0), w)
            out.append((hs, he, ws, we))
    return out


def reference(x: np.ndarray, rois: np.ndarray, output_dim: int, g: int, scale: float,
              top_diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top, the features' diff for `top_diff`) in float64, coordinates in x's Dtype."""
    dt = x.dtype.type
    n, c, h, w = x.shape
    top = np.zeros((len(rois), output_dim, g, g))
    diff = np.zeros(x.shape)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        for k, (hs, he, ws, we) in enumerate(_bins(roi, dt, g, scale, h, w)):
            ph, pw = divmod(k, g)
            if he <= hs or we <= ws:
                continue
            area = (he - hs) * (we - ws)
            for ctop in range(output_dim):
                ch = (ctop * g + ph) * g + pw
                top[r, ctop, ph, pw] = x[b, ch, hs:he, ws:we].astype(np.float64).sum() / area
                diff[b, ch, hs:he, ws:we] += top_diff[r, ctop, ph, pw] / area
    return top, diff


def _case(seed: int, dtype: type) -> tuple[np.ndarray, np.ndarray, int, int, float]:
    r = np.random.RandomState(seed)
    g = [1, 2, 3, 7][seed % 4]
    d = r.randint(1, 4)
    h, w = r.randint(1, 16), r.randint(1, 16)
    x = r.randn(2, d * g * g, h, w)
    scale = float(np.float32([1.0, 0.0625, 0.5, 1 / 3][seed % 4]))
    k = 8
    big = 2 * max(h, w) / scale
    rois = np.c_[r.randint(0, 2, k), r.uniform(-0.3 * big, big, (k, 4))]
    rois[:2, 1:] = np.round(rois[:2, 1:] * 2) / 2  # x.5 corners
    rois[2, 1:] = [3.2, 3.4, 3.1, 3.3]  # one pixel (at scale 1)
    rois[3, 1:] = [6.0, 6.0, 2.0, 2.0]  # x2 < x1: size 0.1
    return x.astype(dtype), rois.astype(dtype), d, g, scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(12))
def test_matches_the_reference(seed: int, dtype: type) -> None:
    x, rois, d, g, scale = _case(seed, dtype)
    xt = torch.from_numpy(x).requires_grad_(True)
    top = P.psroi_pool(xt, torch.from_numpy(rois), d, g, scale)
    td = np.random.RandomState(seed + 50).randn(*top.shape).astype(dtype)
    top.backward(torch.from_numpy(td))
    want_top, want_diff = reference(x, rois, d, g, scale, td)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(top.detach().numpy(), want_top, rtol=tol, atol=tol)
    np.testing.assert_allclose(xt.grad.numpy(), want_diff, rtol=tol, atol=tol)


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2 * 9, 6, 7, dtype=torch.float64, generator=g).requires_grad_(True)
    rois = torch.tensor([[0, 0, 0, 6, 5], [1, 2.5, 3.5, 40, 30], [1, -10, -10, 3, 3],
                         [0, 5, 5, 4, 4]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: P.psroi_pool(t, rois, 2, 3, 1.0), (x,),
                                    fast_mode=True)


def test_custom_op_registrations() -> None:
    x = torch.randn(2, 8, 7, 8, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 6, 5], [1, 1, 1, 3, 3.0]])
    torch.library.opcheck(torch.ops.caffe_fx.psroi_pool.default, (x, rois, 2, 2, 1.0, ""))
    torch.library.opcheck(torch.ops.caffe_fx.psroi_pool_backward.default,
                          (torch.randn(2, 2, 2, 2), rois, 2, 8, 7, 8, 2, 2, 1.0))


NET = """
layer { name: "score" type: "Input" top: "score"
  input_param { shape { dim: 2 dim: 18 dim: 8 dim: 10 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 4 dim: 5 } } }
layer { name: "psroipooled" type: "PSROIPooling" bottom: "score" bottom: "rois" top: "cls"
  psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 group_size: 3 } }
"""
ROIS = torch.tensor([[0, 0, 0, 9, 7], [1, 2, 2, 15, 13], [0, -5, -5, 3, 30],
                     [1, 1.5, 2.5, 8.5, 9.5]])


def test_compiled_net_matches_the_reference() -> None:
    gm = caffe_fx.compile(NET)
    x = torch.randn(2, 18, 8, 10, requires_grad=True)
    top = gm(score=x, rois=ROIS)["cls"]
    td = torch.randn(top.shape)
    top.backward(td)
    want_top, want_diff = reference(x.detach().numpy(), ROIS.numpy(), 2, 3, 0.5, td.numpy())
    np.testing.assert_allclose(top.detach().numpy(), want_top, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), want_diff, rtol=1e-5, atol=1e-6)


def test_script_export_and_compile_give_the_same_values() -> None:
    gm = caffe_fx.compile(NET)
    x = torch.randn(2, 18, 8, 10)
    ours = gm(score=x, rois=ROIS)["cls"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation
        scripted = torch.jit.script(gm)(score=x, rois=ROIS)["cls"]
    exported = torch.export.export(gm, (), {"score": x, "rois": ROIS}).module()
    compiled = torch.compile(gm, fullgraph=True)(score=x, rois=ROIS)["cls"]
    for other in (scripted, exported(score=x, rois=ROIS)["cls"], compiled):
        torch.testing.assert_close(other, ours, rtol=0, atol=0)


def test_channels_must_be_output_dim_times_group_size_squared() -> None:
    with pytest.raises(ShapeError, match=r"layer 'psroipooled' \(PSROIPooling\): features of "
                       r"18 channels, .*output_dim = 3, group_size = 3; allowed: .* = 27"):
        caffe_fx.compile(NET.replace("output_dim: 2", "output_dim: 3"))


def test_required_fields_and_positive_sizes() -> None:
    with pytest.raises(UnsupportedFieldError, match=r"psroi_pooling_param.output_dim = unset"):
        caffe_fx.compile(NET.replace("output_dim: 2 ", ""))
    with pytest.raises(UnsupportedFieldError, match=r"psroi_pooling_param.group_size = 0 is "
                       r"not supported; supported: group_size > 0"):
        caffe_fx.compile(NET.replace("group_size: 3", "group_size: 0"))


def test_batch_index_out_of_range() -> None:
    rois = ROIS.clone()
    rois[0, 0] = 5
    with pytest.raises(InputError, match=r"layer 'psroipooled' \(PSROIPooling\): a roi has "
                       r"batch index 5; allowed: 0 to 1"):
        caffe_fx.compile(NET)(score=torch.randn(2, 18, 8, 10), rois=rois)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_matches_the_cpu_kernel() -> None:
    pytest.importorskip("cupy")
    for seed in range(6):
        for dtype in (np.float32, np.float64):
            x, rois, d, g, scale = _case(seed, dtype)
            cpu = torch.from_numpy(x).requires_grad_(True)
            gpu = torch.from_numpy(x).cuda().requires_grad_(True)
            top_c = P.psroi_pool(cpu, torch.from_numpy(rois), d, g, scale)
            top_g = P.psroi_pool(gpu, torch.from_numpy(rois).cuda(), d, g, scale)
            torch.testing.assert_close(top_g.cpu(), top_c, rtol=1e-5, atol=1e-6)
            td = torch.randn(top_c.shape, dtype=top_c.dtype)
            top_c.backward(td)
            top_g.backward(td.cuda())
            torch.testing.assert_close(gpu.grad.cpu(), cpu.grad, rtol=1e-5, atol=1e-6)
