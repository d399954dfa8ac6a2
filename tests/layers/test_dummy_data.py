"""DummyData against real Caffe: constant fillers, default zero, legacy num/channels/height/width, per-top fillers."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("DummyData")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_dummy_data_matches_caffe(path):
    assert_matches(path)


NET = '''
layer { name: "d" type: "DummyData" top: "g" top: "u"
  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 dim: 5 }
    data_filler { type: "gaussian" std: 2 } data_filler { type: "uniform" min: 1 max: 3 } } }
'''


def test_random_fillers_have_the_declared_shape_and_refill_every_forward():
    import caffe_fx

    gm = caffe_fx.compile(NET)
    first, second = gm(), gm()
    assert first["g"].shape == (2, 3) and first["u"].shape == (4, 5)
    assert not first["g"].equal(second["g"])
    assert ((first["u"] >= 1) & (first["u"] <= 3)).all()


def test_unsupported_filler_is_named():
    import caffe_fx
    from caffe_fx.errors import UnsupportedFieldError

    net = NET.replace('type: "gaussian" std: 2', 'type: "xavier"')
    with pytest.raises(UnsupportedFieldError, match=r"data_filler.type = 'xavier'"):
        caffe_fx.compile(net)
