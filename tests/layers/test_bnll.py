"""BNLL against real Caffe, including inputs far from 0 in both directions."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("BNLL")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_bnll_matches_caffe(path):
    assert_matches(path)
