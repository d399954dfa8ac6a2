"""Sigmoid against real Caffe (0.5 tanh(0.5 x) + 0.5), wide inputs, in place."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Sigmoid")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_sigmoid_matches_caffe(path):
    assert_matches(path)
