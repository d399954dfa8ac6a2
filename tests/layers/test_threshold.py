"""Threshold against real Caffe: default 0, a value, and strict > on inputs
equal to the threshold."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Threshold")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_threshold_matches_caffe(path):
    assert_matches(path)
