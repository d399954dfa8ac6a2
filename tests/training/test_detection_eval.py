"""The SSD fork's eval_type "detection" (weiliu89/caffe Solver::TestDetection): the mean AP
of DetectionEvaluate's rows over test_iter forwards, for every ap_version, against the
fork's own solver (tests/golden/detection_eval/cases.json, made by
tools/make_detection_eval_goldens.py: its logged mAP and per-class APs, 6 digits)."""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe_fx
from caffe_fx.errors import InputError, ProtoError
from caffe_fx.solver import average_precision

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tools.make_detection_eval_goldens import write_case  # noqa: E402

CASES = json.loads((ROOT / "tests" / "golden" / "detection_eval" / "cases.json").read_text())


def _solver(case: dict, folder: Path) -> Path:
    return write_case(folder, case["name"], case["ap_version"], case["evaluate_difficult_gt"],
                      case["overlap_threshold"], np.array(case["det"], np.float32),
                      np.array(case["gt"], np.float32))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_mean_ap_is_the_forks(case: dict, tmp_path: Path, caplog) -> None:
    with caffe_fx.Solver(_solver(case, tmp_path)) as solver, \
            caplog.at_level(logging.INFO, logger="caffe_fx.solver"):
        result = solver.test(0)  # closed after: no data-feed thread outlives the test
    assert set(result) == {"detection_eval"}
    assert result["detection_eval"] == pytest.approx(case["mean_ap"], abs=1e-6)
    ours = {int(m.group(1)): float(m.group(2)) for m in
            (re.fullmatch(r"class(\d+): (\S+)", line) for line in caplog.messages) if m}
    assert ours.keys() == {int(k) for k in case["class_ap"]}
    for label, ap in case["class_ap"].items():
        assert ours[int(label)] == pytest.approx(ap, abs=1e-6), label


def test_the_cases_differ() -> None:
    assert len({round(c["mean_ap"], 4) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("version, expected", [("11point", 0.5), ("Integral", 0.5),
                                                ("MaxIntegral", 0.5)])
def test_average_precision_of_one_hit_in_two_positives(version: str, expected: float) -> None:
    # One true positive, ranked first, of two positives: precision 1 up to recall 0.5.
    got = average_precision([(0.9, 1), (0.5, 0)], 2, version)
    assert float(got) == pytest.approx(expected if version != "11point" else 6 / 11, abs=1e-7)


def test_no_detections_or_positives_give_zero() -> None:
    assert average_precision([], 3, "Integral") == 0
    assert average_precision([(0.5, 1)], 0, "11point") == 0


@pytest.mark.parametrize("field, value, allowed", [
    ("eval_type", "segmentation", "'classification' or 'detection'"),
    ("ap_version", "VOC", "11point, MaxIntegral, Integral"),
])
def test_unknown_values_are_refused(field: str, value: str, allowed: str, tmp_path: Path) -> None:
    path = _solver(CASES[0], tmp_path)
    text = re.sub(rf'{field}: "[^"]*"', f'{field}: "{value}"', path.read_text())
    path.write_text(text)
    with pytest.raises(ProtoError, match=rf"{field} = '{value}'.*{re.escape(allowed)}"):
        caffe_fx.Solver(path)


def test_an_output_that_is_not_detection_rows_is_refused(tmp_path: Path) -> None:
    path = _solver(CASES[0], tmp_path)
    test_net = tmp_path / f"{CASES[0]['name']}_test.prototxt"
    test_net.write_text(test_net.read_text() + 'layer { name: "flat" type: "Flatten" '
                        'bottom: "det" top: "flat" }\n')
    with pytest.raises(InputError, match=r"'flat' has shape \[1, 84\].*\(\.\.\., 5\) rows"):
        with caffe_fx.Solver(path) as solver:
            solver.test(0)


@pytest.mark.parametrize("rel", [
    "chuanqi305+MobileNet-SSD/solver_train.prototxt",
    "Shinung+gpu-rest-engine/models/VGGNet/VOC0712/SSD_300x300/solver.prototxt",
])
def test_published_ssd_solvers_read(rel: str, shared_models: Path) -> None:
    from caffe_fx.optim.solver_param import read_solver
    from caffe_fx.solver import check_solver

    param = read_solver(shared_models / rel)
    assert (param.eval_type, param.ap_version) == ("detection", "11point")
    # Those fields with what the solver needs besides (a net, a policy): no error.
    check_solver(param.__class__(type=param.type, eval_type=param.eval_type,
                                 ap_version=param.ap_version, lr_policy="fixed",
                                 net_param=param.__class__().net_param), rel)
