"""Golden cases for the loss layers and Accuracy (labels drawn with `integers`)."""
from . import Case, input_net


def _case(kind: str, name: str, inputs: dict, body: str, *, bottoms=None, tops=("loss",),
          integers=None, pre: str = "", extra: str = "", **kw) -> Case:
    bottoms = bottoms or tuple(inputs)
    layer = 'layer { name: "%s" type: "%s"%s%s\n%s}\n' % (
        kind.lower(), kind, "".join(f' bottom: "{b}"' for b in bottoms),
        "".join(f' top: "{t}"' for t in tops), f"  {body}\n" if body else "")
    return Case(f"{kind.lower()}-{name}", kind, input_net(inputs) + pre + layer + extra,
                inputs, integers=integers or {}, **kw)


def _pre(kind: str, bottom: str, top: str, body: str = "") -> str:
    return 'layer { name: "%s" type: "%s" bottom: "%s" top: "%s" %s}\n' % (
        top, kind, bottom, top, body)


def softmax_loss(name, shape, label_shape, classes, body="", tops=("loss",), labels=None, **kw):
    return _case("SoftmaxWithLoss", name, {"data": shape, "label": label_shape}, body,
                 tops=tops, integers={"label": labels or classes}, **kw)


def sigmoid_ce(name, body="", shape=(2, 3, 4, 5), labels=None, **kw):
    if labels is None:  # soft targets in (0, 1) from a Softmax of a second input
        return _case("SigmoidCrossEntropyLoss", name, {"data": shape, "raw": shape}, body,
                     bottoms=("data", "target"), pre=_pre("Softmax", "raw", "target"), **kw)
    return _case("SigmoidCrossEntropyLoss", name, {"data": shape, "target": shape}, body,
                 integers={"target": labels}, **kw)


def infogain(name, shape, label_shape, classes, body="", tops=("loss",), labels=None, **kw):
    return _case("InfogainLoss", name,
                 {"data": shape, "label": label_shape, "infogain": (1, 1, classes, classes)},
                 body,
                 tops=tops, integers={"label": labels or classes}, **kw)


def accuracy(name, shape, label_shape, classes, body="", tops=("accuracy",), labels=None,
             scores=None):
    ints = {"label": labels or classes}
    if scores:  # integer scores: many ties
        ints["data"] = scores
    return _case("Accuracy", name, {"data": shape, "label": label_shape}, body, tops=tops,
                 integers=ints)


_LW2 = "loss_weight: 2"
_PROB = "loss_weight: 1 loss_weight: 0"

CASES = [
    softmax_loss("basic", (4, 5), (4,), 5),
    softmax_loss("spatial", (2, 3, 4, 5), (2, 1, 4, 5), 3),
    softmax_loss("ignore", (2, 4, 3, 3), (2, 1, 3, 3), 4, "loss_param { ignore_label: 2 }"),
    softmax_loss("ignore_full", (2, 4, 3, 3), (2, 1, 3, 3), 4,
                 "loss_param { ignore_label: 2 normalization: FULL }"),
    softmax_loss("ignore_batch_size", (2, 4, 3, 3), (2, 1, 3, 3), 4,
                 "loss_param { ignore_label: 2 normalization: BATCH_SIZE }"),
    softmax_loss("ignore_none", (2, 4, 3, 3), (2, 1, 3, 3), 4,
                 "loss_param { ignore_label: 2 normalization: NONE }"),
    softmax_loss("legacy_normalize_false", (2, 4, 3, 3), (2, 1, 3, 3), 4,
                 "loss_param { ignore_label: 1 normalize: false }"),
    softmax_loss("legacy_normalize_true", (2, 4, 3, 3), (2, 1, 3, 3), 4,
                 "loss_param { ignore_label: 1 normalize: true }"),
    softmax_loss("normalization_wins", (2, 4, 3, 3), (2, 1, 3, 3), 4,
                 "loss_param { ignore_label: 1 normalize: false normalization: FULL }"),
    softmax_loss("ignore_out_of_range", (3, 3, 2), (3, 2), 3, "loss_param { ignore_label: 3 }",
                 labels=4),
    softmax_loss("all_ignored", (3, 4), (3,), 4, "loss_param { ignore_label: 0 }", labels=1),
    softmax_loss("axis2", (2, 3, 4), (2, 3), 4, "softmax_param { axis: 2 }"),
    softmax_loss("axis_neg", (3, 2, 5), (3, 2), 5, "softmax_param { axis: -1 }"),
    softmax_loss("flt_min", (4, 6), (4,), 6, low=-200.0, high=200.0),
    softmax_loss("loss_weight", (4, 5), (4,), 5, _LW2),

    _case("EuclideanLoss", "basic", {"a": (2, 3, 4, 5), "b": (2, 3, 4, 5)}, ""),
    _case("EuclideanLoss", "flat", {"a": (4, 6), "b": (4, 6)}, ""),
    _case("EuclideanLoss", "reshaped", {"a": (2, 12), "b": (2, 3, 4)}, ""),
    _case("EuclideanLoss", "loss_weight", {"a": (3, 4), "b": (3, 4)}, _LW2),

    sigmoid_ce("basic_batch_size", labels=2),
    sigmoid_ce("soft_targets"),
    sigmoid_ce("large_logits", low=-30.0, high=30.0),
    sigmoid_ce("ignore", "loss_param { ignore_label: 2 }", labels=3),
    sigmoid_ce("ignore_valid", "loss_param { ignore_label: 2 normalization: VALID }", labels=3),
    sigmoid_ce("ignore_full", "loss_param { ignore_label: 2 normalization: FULL }", labels=3),
    sigmoid_ce("ignore_none", "loss_param { ignore_label: 2 normalization: NONE }", labels=3),
    sigmoid_ce("legacy_normalize_true", "loss_param { ignore_label: 2 normalize: true }",
               labels=3),
    sigmoid_ce("legacy_normalize_false", "loss_param { normalize: false }", labels=2,
               shape=(4, 5)),
    sigmoid_ce("loss_weight", _LW2, labels=2, shape=(3, 4)),

    _case("HingeLoss", "l1", {"data": (4, 5), "label": (4,)}, "", integers={"label": 5}),
    _case("HingeLoss", "l2", {"data": (4, 5), "label": (4,)}, "hinge_loss_param { norm: L2 }",
          integers={"label": 5}),
    _case("HingeLoss", "spatial", {"data": (2, 3, 2, 2), "label": (2,)},
          "hinge_loss_param { norm: L1 }", integers={"label": 12}),
    _case("HingeLoss", "loss_weight", {"data": (3, 4), "label": (3,)}, _LW2,
          integers={"label": 4}),

    _case("ContrastiveLoss", "basic", {"a": (6, 3), "b": (6, 3), "sim": (6,)}, "",
          integers={"sim": 2}),
    _case("ContrastiveLoss", "margin", {"a": (6, 3), "b": (6, 3), "sim": (6,)},
          "contrastive_loss_param { margin: 3.5 }", integers={"sim": 2}),
    _case("ContrastiveLoss", "legacy", {"a": (6, 3), "b": (6, 3), "sim": (6,)},
          "contrastive_loss_param { margin: 8 legacy_version: true }", integers={"sim": 2}),
    _case("ContrastiveLoss", "nchw", {"a": (6, 4, 1, 1), "b": (6, 4, 1, 1),
                                      "sim": (6, 1, 1, 1)},
          "contrastive_loss_param { margin: 3 } loss_weight: 2", integers={"sim": 2}),

    infogain("basic", (4, 5), (4,), 5),
    infogain("spatial", (2, 3, 2, 2), (2, 1, 2, 2), 3, "loss_param { ignore_label: 1 }"),
    infogain("axis2", (2, 3, 4), (2, 3), 4, "infogain_loss_param { axis: 2 }"),
    infogain("ignore_full", (2, 3, 2, 2), (2, 1, 2, 2), 3,
             "loss_param { ignore_label: 1 normalization: FULL }"),
    infogain("ignore_batch_size", (2, 3, 2, 2), (2, 1, 2, 2), 3,
             "loss_param { ignore_label: 1 normalization: BATCH_SIZE }"),
    infogain("ignore_none", (2, 3, 2, 2), (2, 1, 2, 2), 3,
             "loss_param { ignore_label: 1 normalization: NONE }"),
    infogain("prob_top", (4, 5), (4,), 5, _PROB, tops=("loss", "prob")),
    infogain("log_threshold", (4, 6), (4,), 6, low=-60.0, high=60.0),

    _case("MultinomialLogisticLoss", "softmax", {"data": (4, 5), "label": (4,)}, "",
          bottoms=("prob", "label"), pre=_pre("Softmax", "data", "prob"),
          integers={"label": 5}),
    _case("MultinomialLogisticLoss", "zeros", {"data": (6, 3, 1, 1), "label": (6, 1, 1, 1)}, "",
          bottoms=("prob", "label"), pre=_pre("ReLU", "data", "prob"),
          integers={"label": 3}),
    _case("MultinomialLogisticLoss", "loss_weight", {"data": (4, 5), "label": (4,)}, _LW2,
          bottoms=("prob", "label"), pre=_pre("Softmax", "data", "prob"),
          integers={"label": 5}),

    accuracy("basic", (6, 5), (6,), 5),
    accuracy("top_k", (8, 6), (8,), 6, "accuracy_param { top_k: 3 }"),
    accuracy("ties", (8, 4), (8,), 4, scores=2),
    accuracy("ties_top_k", (8, 5), (8,), 5, "accuracy_param { top_k: 2 }", scores=3),
    accuracy("spatial", (2, 4, 3, 3), (2, 1, 3, 3), 4),
    accuracy("axis2", (2, 3, 4), (2, 3), 4, "accuracy_param { axis: 2 }"),
    accuracy("axis_neg", (3, 2, 5), (3, 2), 5, "accuracy_param { axis: -1 top_k: 2 }"),
    accuracy("ignore", (2, 4, 3, 3), (2, 1, 3, 3), 4, "accuracy_param { ignore_label: 1 }"),
    accuracy("all_ignored", (3, 4), (3,), 4, "accuracy_param { ignore_label: 0 }", labels=1),
    accuracy("per_class", (10, 4), (10,), 4, tops=("accuracy", "per_class")),
    accuracy("per_class_absent", (6, 5), (6,), 5, "accuracy_param { ignore_label: 1 }",
             tops=("accuracy", "per_class"), labels=3),
]
