"""SSD's detection layers (weiliu89/caffe, branch ssd): DetectionOutput
(detection_output_param) and DetectionEvaluate (detection_evaluate_param), on the ops of
ops/ssd_detection.py and ops/bbox_util.py.

Mirrors LayerSetUp and Reshape of the fork's src/caffe/layers/detection_output_layer.cpp
(num_classes required, nms_threshold >= 0, 0 < eta <= 1, top_k only when set, the
confidence threshold -FLT_MAX when unset) and detection_evaluate_layer.cpp (num_classes
required, overlap_threshold > 0, the legacy (1, 1, rows, 7|8) bottoms).  Both tops have a
data-dependent row count: the shape inferred at compile time is Net::Init's (the fake
single row of DetectionOutput), the real one comes from running; torch.export refuses
them (ExportError naming the layer).  AnnotatedData needs no lowering: its tops are
inputs (builder.SOURCE_TYPES), `label` shaped (1, 1, N_gt, 8) with N_gt free per batch.
"""
from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ...ops import bbox_util as bu
from ...ops import ssd_detection as ops
from ..registry import Call, LayerView, register

_FLT_MAX = float(np.finfo(np.float32).max)


@register("DetectionOutput", params=("detection_output_param",), bottoms=(3, 4), tops=1,
          inplace_ok=False, fork="weiliu89/caffe")
def detection_output(view: LayerView) -> Call:
    p = view.param.detection_output_param
    if not p.HasField("num_classes"):
        raise view.fail("detection_output_param.num_classes", "unset",
                        "the number of classes, background included (Caffe: Must specify "
                        "num_classes)")
    if p.num_classes < 1:
        raise view.fail("detection_output_param.num_classes", p.num_classes, "at least 1")
    nms = p.nms_param
    if not nms.nms_threshold >= 0:
        raise view.fail("detection_output_param.nms_param.nms_threshold", nms.nms_threshold,
                        "nms_threshold >= 0 (Caffe: nms_threshold must be non negative)")
    if not 0 < nms.eta <= 1:
        raise view.fail("detection_output_param.nms_param.eta", nms.eta, "0 < eta <= 1")
    if p.code_type not in bu.CODE_TYPES:
        raise view.fail("detection_output_param.code_type", p.code_type,
                        ", ".join(bu.CODE_TYPES.values()))
    if p.share_location and p.background_label_id == -1:
        # DecodeBBoxesAll skips the shared label -1 as the background: the fork then
        # aborts with "Could not find location predictions for label -1".
        raise view.fail("detection_output_param.background_label_id", -1,
                        "a class id (or any id but -1) with share_location: true; the fork "
                        "aborts (Could not find location predictions for label -1)")
    save = p.save_output_param
    if save.output_directory:
        raise view.fail("detection_output_param.save_output_param.output_directory",
                        repr(save.output_directory),
                        "empty: caffe_fx returns the detections and writes no result files "
                        "(label_map_file, name_size_file, output_format alone save nothing)")
    if p.visualize:
        raise view.fail("detection_output_param.visualize", True,
                        "false: caffe_fx draws no detections (the fork shows them with "
                        "OpenCV; the top is the same)")
    shapes = view.input_shapes
    ops.check_detection_output_shapes(f"layer '{view.name}' ({view.type})", shapes[0],
                                      shapes[1], shapes[2], p.num_classes, p.share_location)
    # A 4th bottom is read only by visualize (the image), which is refused above.
    return Call(_detection_output_3 if len(view.bottoms) == 3 else _detection_output_4, dict(
        num_classes=int(p.num_classes), share_location=bool(p.share_location),
        background_label_id=int(p.background_label_id),
        nms_threshold=float(nms.nms_threshold),
        top_k=int(nms.top_k) if nms.HasField("top_k") else -1, eta=float(nms.eta),
        keep_top_k=int(p.keep_top_k),
        confidence_threshold=float(p.confidence_threshold)
        if p.HasField("confidence_threshold") else -_FLT_MAX,
        code_type=int(p.code_type),
        variance_encoded_in_target=bool(p.variance_encoded_in_target), layer=view.name))


_detection_output_3 = ops.detection_output
_detection_output_4 = ops.detection_output_image


@register("DetectionEvaluate", params=("detection_evaluate_param",), bottoms=2, tops=1,
          inplace_ok=False, fork="weiliu89/caffe")
def detection_evaluate(view: LayerView) -> Call:
    p = view.param.detection_evaluate_param
    if not p.HasField("num_classes"):
        raise view.fail("detection_evaluate_param.num_classes", "unset",
                        "the number of classes, background included (Caffe: Must provide "
                        "num_classes)")
    if not p.overlap_threshold > 0:
        raise view.fail("detection_evaluate_param.overlap_threshold", p.overlap_threshold,
                        "overlap_threshold > 0 (Caffe: CHECK_GT(overlap_threshold_, 0.))")
    if p.HasField("name_size_file"):
        # With it the fork scales boxes to each image's size (OutputBBox, resize_param),
        # counting images across forwards; without it boxes stay normalized.
        raise view.fail("detection_evaluate_param.name_size_file", repr(p.name_size_file),
                        "unset: caffe_fx evaluates normalized boxes (leave it out; the "
                        "true/false positives differ only where rounding to pixels does)")
    bg = int(p.background_label_id)
    if bg >= 2 ** 31:  # a uint32 field read into the fork's int
        bg -= 2 ** 32
    ops.check_detection_evaluate_shapes(f"layer '{view.name}' ({view.type})",
                                        view.input_shapes[0], view.input_shapes[1])
    if p.num_classes < (0 if bg == -1 else 1):
        raise view.error(f"detection_evaluate_param.num_classes = {p.num_classes}; allowed: "
                         "at least 1 (the background counts)", ShapeError)
    # resize_param is read only with name_size_file (OutputBBox): no effect here.
    return Call(ops.detection_evaluate, dict(
        num_classes=int(p.num_classes), background_label_id=bg,
        overlap_threshold=float(p.overlap_threshold),
        evaluate_difficult_gt=bool(p.evaluate_difficult_gt), layer=view.name))
