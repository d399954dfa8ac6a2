"""TanH against real Caffe."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("TanH")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_tanh_matches_caffe(path):
    assert_matches(path)
