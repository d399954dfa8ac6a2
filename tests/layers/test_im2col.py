"""Im2col against real Caffe: stride, pad, dilation, _h/_w forms, 1-D and 3-D, axis."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Im2col")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_im2col_matches_caffe(path):
    assert_matches(path)
