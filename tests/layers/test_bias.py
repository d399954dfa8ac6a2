"""Bias against real Caffe: axis, num_axes (-1, 0), filler, two bottoms."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Bias")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_bias_matches_caffe(path):
    assert_matches(path)
