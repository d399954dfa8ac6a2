"""Parameter against real Caffe: a 0-bottom module whose blob is its top."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Parameter")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_parameter_matches_caffe(path):
    assert_matches(path)


def test_blob_is_a_zero_filled_parameter_named_after_the_layer():
    import caffe_fx

    gm = caffe_fx.compile('layer { name: "p" type: "Parameter" top: "p"\n'
                          '  parameter_param { shape { dim: 2 dim: 3 } } }\n')
    assert list(gm.state_dict()) == ["p.blob"]
    out = gm()["p"]
    assert out.shape == (2, 3) and not out.any() and out.requires_grad
