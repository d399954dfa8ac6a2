"""Silence against real Caffe: one and two bottoms (no top, no node)."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Silence")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_silence_matches_caffe(path):
    assert_matches(path)


def test_emits_no_node():
    import caffe_fx

    gm = caffe_fx.compile('layer { name: "in" type: "Input" top: "x"\n'
                          '  input_param { shape { dim: 2 } } }\n'
                          'layer { name: "s" type: "Silence" bottom: "x" }\n')
    assert [n.op for n in gm.graph.nodes] == ["placeholder", "output"]
