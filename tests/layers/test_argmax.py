"""ArgMax against real Caffe: top_k, out_max_val, axis, ties to the larger index, the axis-less layout."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("ArgMax")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_argmax_matches_caffe(path):
    assert_matches(path)


def test_ties_resolve_to_the_larger_index():
    import torch

    from caffe_fx.ops.misc import argmax

    x = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]])
    assert argmax(x, 1, False, 1).tolist() == [[4.0]]
    assert argmax(x, 3, False, 1).tolist() == [[4.0, 2.0, 1.0]]
    assert argmax(x, 2, True, None).reshape(-1).tolist() == [4.0, 2.0, 3.0, 3.0]
