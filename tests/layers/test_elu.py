"""ELU against real Caffe: default and custom alpha, in place."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("ELU")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_elu_matches_caffe(path):
    assert_matches(path)
