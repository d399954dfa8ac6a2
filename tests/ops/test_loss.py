"""caffe_fx/ops/loss.py: the generated code of every loss/Accuracy golden net scripts
with TorchScript and gives the same values as the GraphModule."""
import json
import warnings

import numpy as np
import pytest
import torch

import caffe_fx
from tests.golden.harness import cases_for, ids

TYPES = ("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
         "ContrastiveLoss", "InfogainLoss", "MultinomialLogisticLoss", "Accuracy")
CASES = [p for t in TYPES for p in cases_for(t)]


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_scripted_matches_graph_module(path):
    with np.load(path) as f:
        rec = dict(f)
    blobs = [b for b in json.loads(str(rec["meta"]))["blobs"] if f"data/{b}" in rec]
    gm = caffe_fx.compile(str(rec["prototxt"]), outputs=blobs)
    inputs = {k[len("input/"):]: torch.from_numpy(v) for k, v in rec.items()
              if k.startswith("input/")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scripted = torch.jit.script(gm)
    ours, theirs = gm(**inputs), scripted(**inputs)
    for blob in blobs:
        torch.testing.assert_close(theirs[blob], ours[blob], rtol=0, atol=0)


# Caffe's backward formulas (the autograd Functions of ops/loss.py): where they equal the
# derivative of the forward (no clamp reached, no 1e-4 in the way), float64 gradcheck.

def _logits(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


@pytest.mark.parametrize("ignore,norm", [(None, "VALID"), (2, "VALID"), (2, "FULL"),
                                         (None, "BATCH_SIZE"), (0, "NONE")])
def test_softmax_loss_backward_is_the_derivative(ignore, norm) -> None:
    from caffe_fx.ops import loss as L
    label = torch.tensor([[0.0, 2.0, 1.0], [2.0, 3.0, 0.0]], dtype=torch.float64)
    fn = lambda x: L.softmax_loss(x, label, 1, ignore, norm)  # noqa: E731
    x = _logits(2, 4, 3)
    assert type(fn(x).grad_fn).__name__ == "CaffeSoftmaxLossBackward"
    assert torch.autograd.gradcheck(fn, (x,))


def test_softmax_loss_ignores_the_flt_min_clamp_and_the_prob_top() -> None:
    """prob - 1 at the label even where p < FLT_MIN clamps the loss; prob's diff unused."""
    from caffe_fx.ops import loss as L
    x = torch.tensor([[0.0, 200.0]], requires_grad=True)  # p(class 0) = e^-200 ~ 0
    loss, prob = L.softmax_loss_with_prob(x, torch.tensor([0.0]), 1, None, "VALID")
    (dx,) = torch.autograd.grad(loss + 10 * prob.sum(), x)
    torch.testing.assert_close(dx, torch.tensor([[-1.0, 1.0]]))


def test_infogain_loss_backward_is_the_derivative() -> None:
    from caffe_fx.ops import loss as L
    label = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    h = torch.rand(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = _logits(3, 3)
    fn = lambda x: L.infogain_loss(x, label, h, 1, None, "VALID")  # noqa: E731
    assert type(fn(x).grad_fn).__name__ == "CaffeInfogainLossBackward"
    assert torch.autograd.gradcheck(fn, (x,))
    h.requires_grad_(True)
    fn(x.detach().requires_grad_(True)).backward()
    assert h.grad is None  # "Layer cannot backpropagate to infogain inputs."


def test_multinomial_logistic_loss_backward() -> None:
    from caffe_fx.ops import loss as L
    label = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    p = torch.rand(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    p = (p + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: L.multinomial_logistic_loss(p, label), (p,))
    # below the 1e-20 clamp Caffe still divides by the clamped probability
    q = torch.tensor([[0.0, 1.0]], requires_grad=True)
    L.multinomial_logistic_loss(q, torch.tensor([0.0])).backward()
    assert q.grad[0, 0].item() == pytest.approx(-1e20, rel=1e-6)


@pytest.mark.parametrize("legacy", [False, True], ids=["similar_pairs", "legacy"])
def test_contrastive_loss_backward_is_the_derivative(legacy: bool) -> None:
    from caffe_fx.ops import loss as L
    a, b = _logits(4, 3, seed=3), _logits(4, 3, seed=4)
    # the non-legacy dissimilar branch divides by dist + 1e-4: only similar pairs there
    sim = torch.tensor([1.0, 0.0, 1.0, 0.0] if legacy else [1.0] * 4, dtype=torch.float64)
    fn = lambda a, b: L.contrastive_loss(a, b, sim, 10.0, legacy)  # noqa: E731
    assert type(fn(a, b).grad_fn).__name__ == "CaffeContrastiveLossBackward"
    assert torch.autograd.gradcheck(fn, (a, b))


def test_contrastive_loss_divides_by_dist_plus_1e_4() -> None:
    from caffe_fx.ops import loss as L
    a = torch.tensor([[0.3, 0.4]], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, 2, dtype=torch.float64)
    L.contrastive_loss(a, b, torch.tensor([0.0]), 1.0, False).backward()
    dist = 0.5
    torch.testing.assert_close(a.grad, -(1.0 - dist) / (dist + 1e-4) * a.detach())


def test_labels_and_targets_get_no_gradient() -> None:
    from caffe_fx.ops import loss as L
    x = _logits(2, 3)
    t = torch.rand(2, 3, dtype=torch.float64).requires_grad_(True)
    L.sigmoid_cross_entropy_loss(x, t, None, "BATCH_SIZE").backward()
    assert x.grad is not None and t.grad is None
