"""SigmoidCrossEntropyLoss against real Caffe."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("SigmoidCrossEntropyLoss")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_sigmoid_cross_entropy_loss_matches_caffe(path):
    assert_matches(path)
