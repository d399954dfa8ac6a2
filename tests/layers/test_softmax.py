"""Softmax against real Caffe: the default, positive and negative axes."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Softmax")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_softmax_matches_caffe(path):
    assert_matches(path)
