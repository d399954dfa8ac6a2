"""Pooling against real Caffe: MAX/AVE, ceil rounding, padding, global, mask top."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Pooling")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_pooling_matches_caffe(path):
    assert_matches(path)
