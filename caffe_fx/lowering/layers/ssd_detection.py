"""SSD's detection layers (weiliu89/caffe, branch ssd): DetectionOutput
(detection_output_param) and DetectionEvaluate (detection_evaluate_param), on the ops of
ops/ssd_detection.py and ops/bbox_util.py.

Mirrors LayerSetUp and Reshape of the fork's src/caffe/layers/detection_output_layer.cpp
(num_classes required, nms_threshold >= 0, 0 < eta <= 1, top_k only when set, the
confidence threshold -FLT_MAX when unset) and detection_evaluate_layer.cpp (num_classes
required, overlap_threshold > 0, the legacy (1, 1, rows, 7|8) bottoms, name_size_file
read at set-up, relative to the current folder, into a module that counts images). Both
tops have a data-dependent row count: the shape inferred at compile time is Net::Init's
(the fake single row of DetectionOutput), the real one comes from running; torch.export
refuses them (ExportError naming the layer), TorchScript runs to them and raises.
AnnotatedData needs no lowering: its tops are inputs (builder.SOURCE_TYPES), `label`
shaped (1, 1, N_gt, 8) with N_gt free per batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...errors import DataSourceError
from ...ops import bbox_util as bu
from ...ops import ssd_detection as ops
from ...ops.bbox_util import FIT_LARGE_SIZE_AND_PAD, FIT_SMALL_SIZE, WARP
from ...ops.constants import FLT_MAX
from ..registry import Call, CaffeModule, LayerView, register
from .ssd import fork_int



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
    fn = ops.detection_output if len(view.bottoms) == 3 else ops.detection_output_image
    return Call(fn, dict(
        num_classes=int(p.num_classes), share_location=bool(p.share_location),
        background_label_id=int(p.background_label_id),
        nms_threshold=float(nms.nms_threshold),
        top_k=int(nms.top_k) if nms.HasField("top_k") else -1, eta=float(nms.eta),
        keep_top_k=int(p.keep_top_k),
        confidence_threshold=float(p.confidence_threshold)
        if p.HasField("confidence_threshold") else -FLT_MAX,
        code_type=int(p.code_type),
        variance_encoded_in_target=bool(p.variance_encoded_in_target), layer=view.name))



@register("DetectionEvaluate", params=("detection_evaluate_param",), bottoms=2, tops=1,
          inplace_ok=False, fork="weiliu89/caffe")
def detection_evaluate(view: LayerView) -> Call | DetectionEvaluate:
    p = view.param.detection_evaluate_param
    if not p.HasField("num_classes"):
        raise view.fail("detection_evaluate_param.num_classes", "unset",
                        "the number of classes, background included (Caffe: Must provide "
                        "num_classes)")
    if not p.overlap_threshold > 0:
        raise view.fail("detection_evaluate_param.overlap_threshold", p.overlap_threshold,
                        "overlap_threshold > 0 (Caffe: CHECK_GT(overlap_threshold_, 0.))")
    bg = fork_int(p.background_label_id)
    ops.check_detection_evaluate_shapes(f"layer '{view.name}' ({view.type})",
                                        view.input_shapes[0], view.input_shapes[1])
    if p.num_classes < (0 if bg == -1 else 1):  # Reshape's top has num_classes - 1 rows
        raise view.fail("detection_evaluate_param.num_classes", p.num_classes,
                        f"at least 1 with background_label_id = {bg} (the background "
                        "counts; 0 only with background_label_id -1)")
    kwargs = dict(num_classes=int(p.num_classes), background_label_id=bg,
                  overlap_threshold=float(p.overlap_threshold),
                  evaluate_difficult_gt=bool(p.evaluate_difficult_gt), layer=view.name)
    if not p.HasField("name_size_file"):
        # resize_param is read only with name_size_file (OutputBBox): no effect here.
        return Call(ops.detection_evaluate, kwargs)
    sizes = _name_sizes(view, p.name_size_file)
    resize = None
    if p.HasField("resize_param"):
        r = p.resize_param
        if r.resize_mode not in (WARP, FIT_SMALL_SIZE, FIT_LARGE_SIZE_AND_PAD):
            raise view.fail("detection_evaluate_param.resize_param.resize_mode",
                            r.resize_mode, "WARP, FIT_SMALL_SIZE, FIT_LARGE_SIZE_AND_PAD")
        if not (r.height > 0 and r.width > 0):
            raise view.fail("detection_evaluate_param.resize_param.height/width",
                            f"{r.height} x {r.width}", "both > 0 (the fork's "
                            "CHECK_GT(resize_height, 0) in OutputBBox)")
        resize = (int(r.resize_mode), int(r.height), int(r.width), int(r.height_scale),
                  int(r.width_scale))
    return DetectionEvaluate(kwargs, sizes, resize)


class DetectionEvaluate(CaffeModule):
    """DetectionEvaluate with a name_size_file: boxes are scaled to each image's size, the
    images counted across forwards as the fork's count_ (`reset_state()` starts again)."""

    def __init__(self, kwargs: dict, sizes: list[tuple[int, int]],
                 resize: tuple[int, int, int, int, int] | None) -> None:
        super().__init__()
        self.kwargs, self.sizes, self.resize = kwargs, sizes, resize
        self.layer: str = kwargs["layer"]
        self.count = 0

    def forward(self, det: Tensor, gt: Tensor) -> Tensor:
        if not torch.jit.is_scripting():  # TorchScript compiles none of this block
            return self._run(det, gt)
        raise RuntimeError(ops.not_scripted(self.layer, "DetectionEvaluate"))

    @torch.jit.unused
    def _run(self, det: Tensor, gt: Tensor) -> Tensor:
        top, self.count = ops.detection_evaluate_sized(
            det, gt, sizes=self.sizes, resize=self.resize, count=self.count, **self.kwargs)
        return top

    def reset_state(self) -> None:
        self.count = 0

    def extra_repr(self) -> str:
        return f"{len(self.sizes)} image sizes, resize={self.resize}, image {self.count} next"


def _name_sizes(view: LayerView, path: str) -> list[tuple[int, int]]:
    """The (height, width) of each line `name height width` of the name_size_file, read as
    the fork's `infile >> name >> height >> width` (to the first line that is not one)."""
    try:
        with open(path, encoding="utf-8") as f:
            words = f.read().split()
    except (OSError, UnicodeDecodeError) as e:
        raise view.error(f"detection_evaluate_param.name_size_file = {path!r} cannot be "
                         f"read: {e} (Caffe: Failed to open name size file)",
                         DataSourceError) from e
    sizes: list[tuple[int, int]] = []
    for i in range(0, len(words) - 2, 3):
        try:
            sizes.append((int(words[i + 1]), int(words[i + 2])))
        except ValueError:
            break
    return sizes

