"""SSD's MultiBoxLoss (weiliu89/caffe, branch ssd; the functional is ops/multibox_loss.py).

Mirrors multibox_loss_layer.cpp's LayerSetUp (num_classes required and >= 1, the legacy
do_neg_mining agreeing with mining_type, mining only with share_location, a SOFTMAX
background id within [0, num_classes), the loss normalization from loss_param) and
Reshape (the location and confidence counts against the priors'), plus the checks the fork
makes at its first forward whatever the data: map_object_to_agnostic's class count and
HARD_EXAMPLE's sample_size > 0.  The loss adds a loc (conf) term only when the layer
propagates down to loc (conf), as the fork reads its own propagate_down.  The layer is a
blob-less submodule so that torch.jit.script refuses the net up front with an ExportError
naming it: TorchScript cannot compile the eager matching and mining.
"""
from __future__ import annotations

from typing import Any, NoReturn

from torch import Tensor

from ...errors import ExportError
from ...ops import multibox_loss as ops
from ...proto import caffe_pb2
from ..registry import CaffeModule, LayerView, register
from .loss import loss_setup, loss_normalization
from .ssd import fork_int

_P = caffe_pb2.MultiBoxLossParameter


@register("MultiBoxLoss", params=("multibox_loss_param", "loss_param"), bottoms=4, tops=1,
          auto_top=True, is_loss=True, fork="weiliu89/caffe")
def multibox_loss(view: LayerView) -> MultiBoxLoss:
    loss_setup(view)
    p = view.param.multibox_loss_param
    if not p.HasField("num_classes"):
        raise view.fail("multibox_loss_param.num_classes", "unset",
                        "num_classes >= 1 (Caffe: Must provide num_classes.)")
    if p.num_classes < 1:
        raise view.fail("multibox_loss_param.num_classes", p.num_classes, "num_classes >= 1")
    num_classes = int(p.num_classes)
    mining = _P.MiningType.Name(p.mining_type)
    if p.HasField("do_neg_mining") and p.do_neg_mining != (mining != "NONE"):
        raise view.fail("multibox_loss_param.do_neg_mining", p.do_neg_mining,
                        f"the value mining_type = {mining} implies ({mining != 'NONE'}); "
                        "do_neg_mining is deprecated, leave it unset")
    if mining != "NONE" and not p.share_location:
        raise view.fail("multibox_loss_param.share_location", False,
                        f"share_location: true with mining_type = {mining} (Caffe: Currently "
                        "only support negative mining if share_location is true.); or "
                        "mining_type: NONE")
    conf_type = _P.ConfLossType.Name(p.conf_loss_type)
    bg = fork_int(p.background_label_id)
    if conf_type == "SOFTMAX" and not 0 <= bg < num_classes:
        raise view.fail("multibox_loss_param.background_label_id", bg,
                        f"0 to {num_classes - 1} for conf_loss_type SOFTMAX (within "
                        "[0, num_classes))")
    if mining != "NONE" and not bg < num_classes:  # ComputeConfLoss's CHECK_LT, any type
        raise view.fail("multibox_loss_param.background_label_id", bg,
                        f"below num_classes = {num_classes} with mining_type = {mining} "
                        "(Caffe: CHECK_LT(background_label_id, num_classes) in "
                        "ComputeConfLoss)")
    agnostic = 2 if bg >= 0 else 1  # EncodeConfPrediction's CHECK_EQ(num_classes, ...)
    if p.map_object_to_agnostic and num_classes != agnostic:
        raise view.fail("multibox_loss_param.num_classes", num_classes,
                        f"{agnostic} with map_object_to_agnostic and background_label_id "
                        f"= {bg} ({'background and object' if bg >= 0 else 'object'})")
    if mining == "HARD_EXAMPLE" and p.sample_size <= 0:
        raise view.fail("multibox_loss_param.sample_size", p.sample_size,
                        "sample_size > 0 with mining_type HARD_EXAMPLE")
    if p.HasField("nms_param") and p.nms_param.top_k < -1:
        raise view.fail("multibox_loss_param.nms_param.top_k", p.nms_param.top_k,
                        "-1 (all) or a count >= 0")
    loc_classes = 1 if p.share_location else num_classes
    ops.check_shapes(*view.input_shapes, num_classes, loc_classes, view.name)
    # Unset, LayerSetUp adds propagate_down true, true, false, false to its own param.
    down = list(view.param.propagate_down) or [True, True, False, False]
    lp = view.param.loss_param
    nms = p.nms_param
    return MultiBoxLoss(dict(
        num_classes=num_classes, share_location=bool(p.share_location),
        match_type=_P.MatchType.Name(p.match_type),
        overlap_threshold=float(p.overlap_threshold),
        use_prior_for_matching=bool(p.use_prior_for_matching), background_label_id=bg,
        use_difficult_gt=bool(p.use_difficult_gt), mining_type=mining,
        neg_pos_ratio=float(p.neg_pos_ratio), neg_overlap=float(p.neg_overlap),
        code_type=caffe_pb2.PriorBoxParameter.CodeType.Name(p.code_type),
        encode_variance_in_target=bool(p.encode_variance_in_target),
        map_object_to_agnostic=bool(p.map_object_to_agnostic),
        ignore_cross_boundary_bbox=bool(p.ignore_cross_boundary_bbox),
        bp_inside=bool(p.bp_inside), loc_loss_type=_P.LocLossType.Name(p.loc_loss_type),
        conf_loss_type=conf_type, loc_weight=float(p.loc_weight),
        has_nms=p.HasField("nms_param"), nms_threshold=float(nms.nms_threshold),
        top_k=int(nms.top_k), sample_size=int(p.sample_size),
        use_prior_for_nms=bool(p.use_prior_for_nms),
        normalization=loss_normalization(lp, lp.normalization),
        loc_term=bool(down[0]), conf_term=bool(down[1]), layer=view.name))


class MultiBoxLoss(CaffeModule):
    """ops.multibox_loss with the layer's literal arguments; it has no blobs."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.layer: str = kwargs["layer"]

    def forward(self, loc: Tensor, conf: Tensor, prior: Tensor, gt: Tensor) -> Tensor:
        return ops.multibox_loss(loc, conf, prior, gt, **self.kwargs)

    def __prepare_scriptable__(self) -> NoReturn:
        # torch.jit.script calls this on every submodule before compiling anything.
        raise ExportError(ops.not_scripted(self.layer))
