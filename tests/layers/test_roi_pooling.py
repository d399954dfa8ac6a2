"""ROIPooling (Fast R-CNN) against the oicr fork run for real, and the CPU kernels against a
loop model of its roi_pooling_layer.cpp.

Goldens: tools/make_roi_goldens.py (ppengtang/caffe's Forward_cpu and Backward_cpu, which
are rbgirshick/caffe-fast-rcnn's).  compile() runs each case's prototxt; the top and the
features' diff (plain autograd, seeded by the fork's top diff) must match.  The two CPU
kernels of ops/roi_pool.py (float32's window tables, the padded gather of other dtypes) are
compared with `reference` on random cases with ties, -inf, NaN and rois off the map.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import InputError, ShapeError, UnsupportedFieldError
from caffe_fx.ops import roi_pool as R
from tests.golden.harness import assert_like_fork as _close, load_record as _load

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "roi"
CASES = sorted(GOLDEN.glob("*.npz"))
FLT_MAX = float(np.finfo(np.float32).max)


def _c_round(v: float) -> float:
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def reference(x: np.ndarray, rois: np.ndarray, pooled_h: int, pooled_w: int,
              spatial_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """ROIPoolingLayer::Forward_cpu, loop by loop, with the coordinates in the features'
    Dtype (np.float32 or np.float64): (top, argmax)."""
    dt = x.dtype.type
    n, c, h, w = x.shape
    top = np.zeros((len(rois), c, pooled_h, pooled_w), x.dtype)
    argmax = np.full(top.shape, -1, np.int32)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        sw, sh, ew, eh = (int(_c_round(float(dt(roi[k]) * dt(spatial_scale))))
                          for k in (1, 2, 3, 4))
        bin_h = dt(max(eh - sh + 1, 1)) / dt(pooled_h)
        bin_w = dt(max(ew - sw + 1, 1)) / dt(pooled_w)
        for ph in range(pooled_h):
            hs = min(max(int(math.floor(dt(ph) * bin_h)) + sh, 0), h)
            he = min(max(int(math.ceil(dt(ph + 1) * bin_h)) + sh, 0), h)
            for pw in range(pooled_w):
                ws = min(max(int(math.floor(dt(pw) * bin_w)) + sw, 0), w)
                we = min(max(int(math.ceil(dt(pw + 1) * bin_w)) + sw, 0), w)
                if he <= hs or we <= ws:
                    continue  # empty: 0, argmax -1
                for ch in range(c):
                    best, where = -FLT_MAX, -1
                    for hh in range(hs, he):
                        for ww in range(ws, we):
                            if x[b, ch, hh, ww] > best:
                                best, where = x[b, ch, hh, ww], hh * w + ww
                    top[r, ch, ph, pw], argmax[r, ch, ph, pw] = best, where
    return top, argmax


def reference_backward(top_diff: np.ndarray, rois: np.ndarray, argmax: np.ndarray,
                       shape: tuple[int, ...]) -> np.ndarray:
    """Backward_cpu: each top diff added to its argmax, in float64."""
    out = np.zeros(shape, np.float64)
    plane = out.reshape(shape[0], shape[1], -1)
    for (r, ch, ph, pw), a in np.ndenumerate(argmax):
        if a >= 0:
            plane[int(rois[r, 0]), ch, a] += top_diff[r, ch, ph, pw]
    return out


# ---------------------------------------------------------------- the fork's goldens

@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_the_fork_forward_and_backward(path: Path) -> None:
    rec = _load(path)
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=["pool"])
    data = torch.from_numpy(rec["input/data"]).requires_grad_(True)
    rois = torch.from_numpy(rec["input/rois"]).requires_grad_(True)
    top = gm(data=data, rois=rois)["pool"]
    _close(top.detach().numpy(), rec["data/pool"], f"{path.stem}: top")
    top.backward(torch.from_numpy(rec["topdiff/pool"]))
    _close(data.grad.numpy(), rec["diff/data"], f"{path.stem}: diff of data")
    assert rois.grad is None  # Caffe cannot backpropagate to the rois


def test_goldens_cover_what_the_layer_distinguishes() -> None:
    """The cases hold empty bins (top 0), bins of only -inf / -FLT_MAX (top -FLT_MAX),
    ties and rois off the map."""
    tops = {p.stem: _load(p)["data/pool"] for p in CASES}
    assert (tops["roi_degenerate_2x2"] == 0).any()
    assert (tops["roi_special_values_2x2"] == -FLT_MAX).any()
    ties = _load(GOLDEN / "roi_ties_relu_7x7.npz")
    assert (ties["data/pool"] == 0).sum() > 10  # all-zero bins: the first zero takes the diff


def test_halves_round_away_from_zero() -> None:
    """torch.round's half-to-even gives other bins on the x.5 cases: C's round() is what
    matches the fork."""
    for name in ("roi_halves_2x3", "roi_halves_scale_3x3"):
        rec = _load(GOLDEN / f"{name}.npz")
        scale = 0.5 if "scale" in name else 1.0
        pooled = (2, 3) if name.endswith("2x3") else (3, 3)
        x, rois = torch.from_numpy(rec["input/data"]), torch.from_numpy(rec["input/rois"])
        ours = R.roi_pool(x, rois, *pooled, scale)
        np.testing.assert_array_equal(ours.numpy(), rec["data/pool"])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(R, "c_round", torch.round)
            assert not np.array_equal(R.roi_pool(x, rois, *pooled, scale).numpy(),
                                      rec["data/pool"])


@pytest.mark.oracle
def test_goldens_are_reproduced_by_the_fork(tmp_path: Path, monkeypatch) -> None:
    """The generator still gives the committed numbers (needs root and the oicr overlay)."""
    from tools import make_roi_goldens as M
    monkeypatch.setenv("CAFFE_ORACLE_FORK", "oicr")
    monkeypatch.setattr(M, "GOLDEN", tmp_path)
    for name in ("roi_halves_scale_3x3", "roi_special_values_2x2"):
        M.make(next(c for c in M.CASES if c.name == name))
        new, old = _load(tmp_path / f"{name}.npz"), _load(GOLDEN / f"{name}.npz")
        assert sorted(new) == sorted(old)
        for k in old:
            np.testing.assert_array_equal(new[k], old[k], err_msg=f"{name}: {k}")


# ---------------------------------------------------------------- the CPU kernels

def _random_case(seed: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, int, int, float]:
    r = np.random.RandomState(seed)
    n, c, h, w = 2, 3, r.randint(1, 14), r.randint(1, 14)
    x = r.randn(n, c, h, w)
    x[0, 0] = np.maximum(x[0, 0], 0)  # ReLU zeros: ties
    x[1, 1, : h // 2] = 1.0  # a constant block
    x[1, 2, 0, :] = -np.inf
    x[0, 2, r.randint(h), r.randint(w)] = np.nan  # never taken by Caffe's `>`
    x[0, 1, -1, -1] = -FLT_MAX
    k = 9
    rois = np.c_[r.randint(0, n, k), r.uniform(-20, 3 * max(h, w), (k, 4))]
    rois[:3, 1:] = np.round(rois[:3, 1:] * 2) / 2  # x.5 corners
    scale = [1.0, 0.0625, 0.5, 1 / 3, 2.0][seed % 5]
    return x.astype(dtype), rois.astype(dtype), r.randint(1, 8), r.randint(1, 8), \
        float(np.float32(scale))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(12))
def test_cpu_kernel_matches_the_reference(seed: int, dtype: np.dtype) -> None:
    x, rois, ph, pw, scale = _random_case(seed, dtype)
    top, argmax = torch.ops.caffe_fx.roi_pool(torch.from_numpy(x), torch.from_numpy(rois),
                                              ph, pw, scale, "")
    want_top, want_argmax = reference(x, rois, ph, pw, scale)
    np.testing.assert_array_equal(top.numpy(), want_top)
    np.testing.assert_array_equal(argmax.numpy(), want_argmax)
    g = np.random.RandomState(seed + 100).randn(*top.shape).astype(dtype)
    diff = torch.ops.caffe_fx.roi_pool_backward(torch.from_numpy(g), torch.from_numpy(rois),
                                                argmax, *x.shape)
    want = reference_backward(g, rois, want_argmax, x.shape)
    np.testing.assert_allclose(diff.numpy(), want, rtol=1e-6, atol=1e-6)


def test_float32_kernel_on_a_larger_map_uses_sparse_heights(monkeypatch) -> None:
    """Where exact-height tables would be too large the float32 kernel takes four windows
    per bin, and where those would be too, it pools a few channels at a time; every
    layout gives the reference's numbers (bins up to 13 x 17)."""
    r = np.random.RandomState(7)
    x = np.maximum(r.randn(2, 5, 40, 50), 0).astype(np.float32)
    rois = np.c_[r.randint(0, 2, 30), r.uniform(-40, 420, (30, 4))].astype(np.float32)
    want = reference(x, rois, 3, 3, 0.125)
    for budget in (R._TABLE_BYTES, 2_500_000, 0):  # sparse, channels by 2, by 1
        monkeypatch.setattr(R, "_TABLE_BYTES", budget)
        top, argmax = torch.ops.caffe_fx.roi_pool(torch.from_numpy(x), torch.from_numpy(rois),
                                                  3, 3, 0.125, "")
        np.testing.assert_array_equal(top.numpy(), want[0])
        np.testing.assert_array_equal(argmax.numpy(), want[1])


def test_float32_kernel_chunks_rois(monkeypatch) -> None:
    monkeypatch.setattr(R, "_CHUNK", 1)  # one roi per chunk
    x, rois, ph, pw, scale = _random_case(3, np.float32)
    top, argmax = torch.ops.caffe_fx.roi_pool(torch.from_numpy(x), torch.from_numpy(rois),
                                              ph, pw, scale, "")
    want = reference(x, rois, ph, pw, scale)
    np.testing.assert_array_equal(top.numpy(), want[0])
    np.testing.assert_array_equal(argmax.numpy(), want[1])


def test_no_rois_and_half_precision() -> None:
    x = torch.randn(1, 2, 5, 5)
    top = R.roi_pool(x, torch.zeros((0, 5)), 2, 2, 1.0)
    assert top.shape == (0, 2, 2, 2)
    rois = torch.tensor([[0, 0, 0, 4, 4], [0, 1, 2, 3, 3.0]])
    half = R.roi_pool(x.half(), rois.half(), 2, 2, 1.0)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), R.roi_pool(x.half().float(), rois, 2, 2, 1.0))


def test_gradcheck_float64() -> None:
    """Away from ties the max is differentiable, and the diff is autograd's gradient."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, generator=g).requires_grad_(True)
    rois = torch.tensor([[0, 0, 0, 6, 5], [1, 2.5, 3.5, 40, 30], [1, -10, -10, 3, 3],
                         [0, 5, 5, 4, 4], [0, 3, 3, 7, 7]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: R.roi_pool(t, rois, 3, 2, 0.5), (x,),
                                    fast_mode=True)


def test_custom_op_registrations() -> None:
    """Schema, fake (meta) kernel, autograd registration and AOT dispatch."""
    x = torch.randn(2, 3, 7, 8, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 6, 5], [1, 1, 1, 3, 3.0]])
    torch.library.opcheck(torch.ops.caffe_fx.roi_pool.default, (x, rois, 2, 3, 1.0, ""))
    _, argmax = torch.ops.caffe_fx.roi_pool(x.detach(), rois, 2, 3, 1.0, "")
    torch.library.opcheck(torch.ops.caffe_fx.roi_pool_backward.default,
                          (torch.randn(2, 3, 2, 3), rois, argmax, 2, 3, 7, 8))
    meta = torch.ops.caffe_fx.roi_pool(x.to("meta"), rois.to("meta"), 2, 3, 1.0, "")
    assert meta[0].shape == (2, 3, 2, 3) and meta[1].dtype == torch.int32


# ---------------------------------------------------------------- compile(), script, export

NET = """
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 2 dim: 3 dim: 8 dim: 10 } } }
layer { name: "rois" type: "Input" top: "rois" input_param { shape { dim: 4 dim: 5 } } }
layer { name: "roi_pool5" type: "ROIPooling" bottom: "data" bottom: "rois" top: "pool5"
  roi_pooling_param { pooled_h: 2 pooled_w: 3 spatial_scale: 0.5 } }
"""
ROIS = torch.tensor([[0, 0, 0, 9, 7], [1, 2, 2, 15, 13], [0, -5, -5, 3, 30],
                     [1, 1.5, 2.5, 8.5, 9.5]])


def test_generated_code_is_one_call() -> None:
    gm = caffe_fx.compile(NET)
    assert "roi_pool(data, rois, pooled_h = 2, pooled_w = 3, spatial_scale = 0.5, " \
        "layer = 'roi_pool5')" in gm.code


def test_script_export_and_compile_give_the_same_values() -> None:
    gm = caffe_fx.compile(NET)
    x = torch.randn(2, 3, 8, 10)
    ours = gm(data=x, rois=ROIS)["pool5"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation
        scripted = torch.jit.script(gm)(data=x, rois=ROIS)["pool5"]
    exported = torch.export.export(gm, (), {"data": x, "rois": ROIS}).module()
    compiled = torch.compile(gm, fullgraph=True)(data=x, rois=ROIS)["pool5"]
    for other in (scripted, exported(data=x, rois=ROIS)["pool5"], compiled):
        torch.testing.assert_close(other, ours, rtol=0, atol=0)


def test_torch_compile_backward_matches_eager() -> None:
    gm = caffe_fx.compile(NET)
    x = torch.randn(2, 3, 8, 10, requires_grad=True)
    seed = torch.randn(4, 3, 2, 3)
    gm(data=x, rois=ROIS)["pool5"].backward(seed)
    eager = x.grad.clone()
    x.grad = None
    torch.compile(gm, backend="aot_eager")(data=x, rois=ROIS)["pool5"].backward(seed)
    torch.testing.assert_close(x.grad, eager, rtol=0, atol=0)


def test_legacy_four_axis_rois() -> None:
    net = NET.replace("dim: 4 dim: 5 }", "dim: 4 dim: 5 dim: 1 dim: 1 }")
    x = torch.randn(2, 3, 8, 10)
    ours = caffe_fx.compile(net)(data=x, rois=ROIS.view(4, 5, 1, 1))["pool5"]
    torch.testing.assert_close(ours, caffe_fx.compile(NET)(data=x, rois=ROIS)["pool5"])


# ---------------------------------------------------------------- errors

def test_pooled_size_zero_is_refused() -> None:
    with pytest.raises(UnsupportedFieldError, match=r"layer 'roi_pool5' \(ROIPooling\): "
                       r"roi_pooling_param.pooled_w = 0 .*pooled_w > 0"):
        caffe_fx.compile(NET.replace("pooled_w: 3 ", ""))


@pytest.mark.parametrize("shape", [(4, 4), (4,), (4, 5, 2)])
def test_rois_of_another_shape_are_refused(shape: tuple[int, ...]) -> None:
    dims = " ".join(f"dim: {d}" for d in shape)
    with pytest.raises(ShapeError, match=r"layer 'roi_pool5' \(ROIPooling\): rois \(bottom 1\)"
                       r" of shape .*allowed: R x 5"):
        caffe_fx.compile(NET.replace("dim: 4 dim: 5", dims))


def test_features_must_be_4d() -> None:
    with pytest.raises(ShapeError, match=r"features \(bottom 0\) of shape \[2, 3, 8\]"):
        caffe_fx.compile(NET.replace("dim: 2 dim: 3 dim: 8 dim: 10", "dim: 2 dim: 3 dim: 8"))


@pytest.mark.parametrize("index", [2, -1])
def test_batch_index_out_of_range(index: int) -> None:
    gm = caffe_fx.compile(NET)
    rois = ROIS.clone()
    rois[1, 0] = index
    with pytest.raises(InputError, match=rf"layer 'roi_pool5' \(ROIPooling\): a roi has batch "
                       rf"index {index}; allowed: 0 to 1"):
        gm(data=torch.randn(2, 3, 8, 10), rois=rois)


# ---------------------------------------------------------------- CUDA

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_matches_the_cpu_kernel() -> None:
    pytest.importorskip("cupy")
    for seed in range(6):
        for dtype in (np.float32, np.float64):
            x, rois, ph, pw, scale = _random_case(seed, dtype)
            cpu = torch.from_numpy(x).requires_grad_(True)
            gpu = torch.from_numpy(x).cuda().requires_grad_(True)
            top_c = R.roi_pool(cpu, torch.from_numpy(rois), ph, pw, scale)
            top_g = R.roi_pool(gpu, torch.from_numpy(rois).cuda(), ph, pw, scale)
            torch.testing.assert_close(top_g.cpu(), top_c, rtol=0, atol=0)
            seed_diff = torch.randn(top_c.shape, dtype=top_c.dtype)
            top_c.backward(seed_diff)
            top_g.backward(seed_diff.cuda())
            torch.testing.assert_close(gpu.grad.cpu(), cpu.grad, rtol=1e-6, atol=1e-6)
