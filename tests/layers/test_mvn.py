"""MVN against real Caffe: normalize_variance, across_channels, eps on the std, 2-D and 3-D bottoms (4-D tops)."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("MVN")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_mvn_matches_caffe(path):
    assert_matches(path)
