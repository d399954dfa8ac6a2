"""ReLU against real Caffe: plain, leaky (negative_slope), in place over an input
and over an intermediate blob."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("ReLU")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_relu_matches_caffe(path):
    assert_matches(path)
