"""Swish against real Caffe: default and custom beta, in place."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Swish")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_swish_matches_caffe(path):
    assert_matches(path)
