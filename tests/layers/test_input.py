"""Input against real Caffe: one shape for two tops."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Input")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_input_matches_caffe(path):
    assert_matches(path)
