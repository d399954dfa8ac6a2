"""BatchReindex against real Caffe: repeated and permuted indices."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("BatchReindex")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_batch_reindex_matches_caffe(path):
    assert_matches(path)
