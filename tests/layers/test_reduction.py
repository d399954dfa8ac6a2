"""Reduction against real Caffe: SUM/ASUM/SUMSQ/MEAN, axis (negative and 0 = scalar), coeff."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Reduction")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_reduction_matches_caffe(path):
    assert_matches(path)
