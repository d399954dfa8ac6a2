"""InnerProduct against real Caffe: axis, transpose, no bias, 2-D and 4-D bottoms."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("InnerProduct")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_inner_product_matches_caffe(path):
    assert_matches(path)
