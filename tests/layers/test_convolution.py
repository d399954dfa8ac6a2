"""Convolution and Deconvolution against real Caffe."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CONV = cases_for("Convolution")
DECONV = cases_for("Deconvolution")


@pytest.mark.parametrize("path", CONV, ids=ids(CONV))
def test_convolution_matches_caffe(path):
    assert_matches(path)


@pytest.mark.parametrize("path", DECONV, ids=ids(DECONV))
def test_deconvolution_matches_caffe(path):
    assert_matches(path)
