"""`caffe-fx time` against real `caffe time` (tests/golden/cli/caffe_time.txt,
tools/make_cli_goldens.py).

Timings never equal Caffe's; the lines must: the same lines in the same order with only
the numbers differing, and the one number that is not a time, the initial loss of a net
whose Input blobs hold zeros (ln 3 for any weights), must be Caffe's.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from caffe_fx.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cli"
NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]\d+)?")


def caffe_lines() -> list[str]:
    return (GOLDEN / "caffe_time.txt").read_text().splitlines()


def ours(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["time", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Use CPU."
    return lines[lines.index("Performing Forward"):]


def masked(lines: list[str]) -> list[str]:
    return [NUMBER.sub("#", line) for line in lines]


def test_lines_are_caffes_with_other_timings(capsys: pytest.CaptureFixture[str]) -> None:
    got = ours(capsys, "-model", str(GOLDEN / "time_net.prototxt"), "-iterations", "3")
    want = caffe_lines()
    assert masked(got) == masked(want)
    assert got[1] == want[1] == "Initial loss: 1.09861"
    # per-layer names right-aligned to 10 as setw(10) does, then a tab
    assert "     conv1\tforward: " in "\n".join(got)


def test_per_layer_times_add_up_to_the_passes(capsys: pytest.CaptureFixture[str]) -> None:
    got = ours(capsys, "--model", str(GOLDEN / "time_net.prototxt"), "--iterations=2")
    value = {}
    for line in got:
        m = re.match(r"\s*(\S+)\t(forward|backward): (\S+) ms\.", line)
        if m:
            value[m[1], m[2]] = float(m[3])
    avg = {m[1]: float(m[2]) for m in (re.match(r"Average (\S+) pass: (\S+) ms\.", x)
                                       for x in got) if m}
    fwd = sum(v for (_, kind), v in value.items() if kind == "forward")
    bwd = sum(v for (_, kind), v in value.items() if kind == "backward")
    assert value["conv1", "forward"] > 0 and value["conv1", "backward"] > 0
    assert value["fc", "backward"] > 0
    assert 0 < fwd <= avg["Forward"] * 1.001 and 0 < bwd <= avg["Backward"] * 1.001


def test_test_phase_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    got = ours(capsys, "-model=" + str(GOLDEN / "time_net.prototxt"), "-iterations", "1",
               "-phase", "TEST")
    assert got[-1] == "*** Benchmark ends ***"
    with pytest.raises(SystemExit) as e:
        main(["time", "-model", str(GOLDEN / "time_net.prototxt"), "-phase", "VAL"])
    assert e.value.code == 2
    assert "phase must be TRAIN or TEST" in capsys.readouterr().err
    assert main(["time", "-model", str(GOLDEN / "time_net.prototxt"), "-iterations", "0"]) == 1
    assert "-iterations 0: must be at least 1" in capsys.readouterr().err
    assert main(["time", "-model", str(GOLDEN / "nope.prototxt")]) == 1
    assert "nope.prototxt" in capsys.readouterr().err


def test_data_layers_read_their_feed(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)  # the HDF5Data net's list and files are relative to it
    got = ours(capsys, "-model", "net.prototxt", "-iterations", "2")
    # TRAIN phase: HDF5Data (batch 4) -> ip -> loss; the first batch's loss is not zero's ln 3
    assert not got[1].startswith("Initial loss: 1.09861")
    assert [x.split("\t")[0].strip() for x in got if "\tforward:" in x] == ["data", "ip", "loss"]
    data_forward = next(x for x in got if x.startswith("      data\tforward: "))
    assert float(data_forward.split()[2]) > 0
