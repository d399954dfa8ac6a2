"""Embed against real Caffe: with and without bias, 1-D and 2-D index bottoms."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Embed")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_embed_matches_caffe(path):
    assert_matches(path)
