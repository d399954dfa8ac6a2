"""Upgrade legacy net definitions (V0 and V1 layers, net-level inputs) to the current format.

Frontend, between reading and building the DAG: read.py -> upgrade.py -> graph.py.
Mirrors `UpgradeNetAsNeeded` of BVLC Caffe 1.0 (src/caffe/util/upgrade_proto.cpp) step
for step, quirks included, so that a legacy file means here exactly what it means to
Caffe; what Caffe only logs is logged, what Caffe aborts on raises ProtoUpgradeError.
"""
from __future__ import annotations

import logging

from google.protobuf.message import Message

from caffe_fx.errors import ProtoUpgradeError
from caffe_fx.proto import caffe_pb2

__all__ = ["needs_upgrade", "upgrade_net"]

_log = logging.getLogger(__name__)

_V1 = caffe_pb2.V1LayerParameter

# UpgradeV0LayerType. "padding" is missing on purpose: those layers are folded into
# their consumer before any type is looked up, so a surviving one is an error.
_V0_TYPES: dict[str, int] = {
    "accuracy": _V1.ACCURACY,
    "bnll": _V1.BNLL,
    "concat": _V1.CONCAT,
    "conv": _V1.CONVOLUTION,
    "data": _V1.DATA,
    "dropout": _V1.DROPOUT,
    "euclidean_loss": _V1.EUCLIDEAN_LOSS,
    "flatten": _V1.FLATTEN,
    "hdf5_data": _V1.HDF5_DATA,
    "hdf5_output": _V1.HDF5_OUTPUT,
    "im2col": _V1.IM2COL,
    "images": _V1.IMAGE_DATA,
    "infogain_loss": _V1.INFOGAIN_LOSS,
    "innerproduct": _V1.INNER_PRODUCT,
    "lrn": _V1.LRN,
    "multinomial_logistic_loss": _V1.MULTINOMIAL_LOGISTIC_LOSS,
    "pool": _V1.POOLING,
    "relu": _V1.RELU,
    "sigmoid": _V1.SIGMOID,
    "softmax": _V1.SOFTMAX,
    "softmax_loss": _V1.SOFTMAX_LOSS,
    "split": _V1.SPLIT,
    "tanh": _V1.TANH,
    "window_data": _V1.WINDOW_DATA,
}

# UpgradeV1LayerType: every V1 enum value to its registry type string. NONE becomes
# an explicitly set empty type, not an absent one.
_V1_TYPES: dict[int, str] = {
    _V1.NONE: "",
    _V1.ABSVAL: "AbsVal",
    _V1.ACCURACY: "Accuracy",
    _V1.ARGMAX: "ArgMax",
    _V1.BNLL: "BNLL",
    _V1.CONCAT: "Concat",
    _V1.CONTRASTIVE_LOSS: "ContrastiveLoss",
    _V1.CONVOLUTION: "Convolution",
    _V1.DECONVOLUTION: "Deconvolution",
    _V1.DATA: "Data",
    _V1.DROPOUT: "Dropout",
    _V1.DUMMY_DATA: "DummyData",
    _V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    _V1.ELTWISE: "Eltwise",
    _V1.EXP: "Exp",
    _V1.FLATTEN: "Flatten",
    _V1.HDF5_DATA: "HDF5Data",
    _V1.HDF5_OUTPUT: "HDF5Output",
    _V1.HINGE_LOSS: "HingeLoss",
    _V1.IM2COL: "Im2col",
    _V1.IMAGE_DATA: "ImageData",
    _V1.INFOGAIN_LOSS: "InfogainLoss",
    _V1.INNER_PRODUCT: "InnerProduct",
    _V1.LRN: "LRN",
    _V1.MEMORY_DATA: "MemoryData",
    _V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss",
    _V1.MVN: "MVN",
    _V1.POOLING: "Pooling",
    _V1.POWER: "Power",
    _V1.RELU: "ReLU",
    _V1.SIGMOID: "Sigmoid",
    _V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss",
    _V1.SILENCE: "Silence",
    _V1.SOFTMAX: "Softmax",
    _V1.SOFTMAX_LOSS: "SoftmaxWithLoss",
    _V1.SPLIT: "Split",
    _V1.SLICE: "Slice",
    _V1.TANH: "TanH",
    _V1.WINDOW_DATA: "WindowData",
    _V1.THRESHOLD: "Threshold",
}

# UpgradeV0LayerParameter: V0 field -> {V0 layer type: destination in the V1 layer}.
# A field set on a type not listed is dropped with an error log and the upgrade goes
# on; Caffe then reports the file as not fully upgraded but still uses it.
_V0_FIELDS: dict[str, dict[str, str]] = {
    "num_output": {"conv": "convolution_param.num_output",
                   "innerproduct": "inner_product_param.num_output"},
    "biasterm": {"conv": "convolution_param.bias_term",
                 "innerproduct": "inner_product_param.bias_term"},
    "weight_filler": {"conv": "convolution_param.weight_filler",
                      "innerproduct": "inner_product_param.weight_filler"},
    "bias_filler": {"conv": "convolution_param.bias_filler",
                    "innerproduct": "inner_product_param.bias_filler"},
    "pad": {"conv": "convolution_param.pad", "pool": "pooling_param.pad"},
    "kernelsize": {"conv": "convolution_param.kernel_size", "pool": "pooling_param.kernel_size"},
    "group": {"conv": "convolution_param.group"},
    "stride": {"conv": "convolution_param.stride", "pool": "pooling_param.stride"},
    "pool": {"pool": "pooling_param.pool"},
    "dropout_ratio": {"dropout": "dropout_param.dropout_ratio"},
    "local_size": {"lrn": "lrn_param.local_size"},
    "alpha": {"lrn": "lrn_param.alpha"},
    "beta": {"lrn": "lrn_param.beta"},
    "k": {"lrn": "lrn_param.k"},
    "source": {"data": "data_param.source",
               "hdf5_data": "hdf5_data_param.source",
               "images": "image_data_param.source",
               "window_data": "window_data_param.source",
               "infogain_loss": "infogain_loss_param.source"},
    "batchsize": {"data": "data_param.batch_size",
                  "hdf5_data": "hdf5_data_param.batch_size",
                  "images": "image_data_param.batch_size",
                  "window_data": "window_data_param.batch_size"},
    "rand_skip": {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"},
    "shuffle_images": {"images": "image_data_param.shuffle"},
    "new_height": {"images": "image_data_param.new_height"},
    "new_width": {"images": "image_data_param.new_width"},
    "concat_dim": {"concat": "concat_param.concat_dim"},
    "det_fg_threshold": {"window_data": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"window_data": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"window_data": "window_data_param.fg_fraction"},
    "det_context_pad": {"window_data": "window_data_param.context_pad"},
    "det_crop_mode": {"window_data": "window_data_param.crop_mode"},
    "hdf5_output_param": {"hdf5_output": "hdf5_output_param"},
}
# new_num and new_channels have no destination at all: Caffe drops them without a word.

# V0 transformation fields land in transform_param whatever the layer type.
_V0_TRANSFORM_FIELDS: dict[str, str] = {
    "scale": "scale", "meanfile": "mean_file", "cropsize": "crop_size", "mirror": "mirror",
}

# NetNeedsDataUpgrade / UpgradeNetDataTransformation: the V1 data layers whose own
# param still carried the transformation fields before transform_param existed.
_V1_DATA_PARAMS: dict[int, str] = {
    _V1.DATA: "data_param",
    _V1.IMAGE_DATA: "image_data_param",
    _V1.WINDOW_DATA: "window_data_param",
}
_LEGACY_TRANSFORM_FIELDS: tuple[str, ...] = ("scale", "mean_file", "crop_size", "mirror")

# UpgradeV1LayerParameter copies these typed sub-messages verbatim (all of V1's).
_V1_TYPED_PARAMS: tuple[str, ...] = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param",
    "exp_param", "hdf5_data_param", "hdf5_output_param", "hinge_loss_param",
    "image_data_param", "infogain_loss_param", "inner_product_param", "lrn_param",
    "memory_data_param", "mvn_param", "pooling_param", "power_param", "relu_param",
    "sigmoid_param", "softmax_param", "slice_param", "tanh_param", "threshold_param",
    "window_data_param", "transform_param", "loss_param",
)


def needs_upgrade(net: caffe_pb2.NetParameter) -> bool:
    """True iff Caffe 1.0 would change `net` on reading it (`NetNeedsUpgrade`)."""
    return (
        _needs_v0_to_v1(net)
        or _needs_v1_to_v2(net)
        or _needs_data_upgrade(net)
        or _needs_input_upgrade(net)
        or _needs_batch_norm_upgrade(net)
    )


def upgrade_net(net: caffe_pb2.NetParameter, source: str = "<net>") -> caffe_pb2.NetParameter:
    """Returns an upgraded COPY (never mutates the argument).

    The steps and their order are Caffe's: V0->V1 (padding layers folded into the next
    conv/pool), the V1 data-transformation upgrade, V1->V2 (enum types to strings,
    blobs_lr/weight_decay/param/blob_share_mode -> ParamSpec, typed sub-messages and
    blobs copied), input/input_dim/input_shape -> an Input layer named "input" placed
    first (names alone are dropped), and BatchNorm layers with exactly 3 param entries
    get lr_mult = decay_mult = 0. Works as well for binary caffemodels (V0/V1 layers
    carrying blobs). `source` names the file in error messages.
    """
    upgraded = caffe_pb2.NetParameter()
    upgraded.CopyFrom(net)
    if _needs_v0_to_v1(upgraded):
        upgraded = _upgrade_v0_net(upgraded, source)
    if _needs_data_upgrade(upgraded):
        _upgrade_data_transformation(upgraded)
    if _needs_v1_to_v2(upgraded):
        upgraded = _upgrade_v1_net(upgraded, source)
    if _needs_input_upgrade(upgraded):
        _upgrade_input_fields(upgraded, source)
    if _needs_batch_norm_upgrade(upgraded):
        _upgrade_batch_norm(upgraded)
    return upgraded


# --- V0 -> V1 -----------------------------------------------------------------------


def _needs_v0_to_v1(net: caffe_pb2.NetParameter) -> bool:
    return any(entry.HasField("layer") for entry in net.layers)


def _upgrade_v0_net(net: caffe_pb2.NetParameter, source: str) -> caffe_pb2.NetParameter:
    folded = _fold_padding_layers(net, source)
    # UpgradeV0Net rebuilds the net from an empty message keeping only name, input,
    # input_dim and force_backward: state, debug_info, input_shape and any
    # current-format `layer` entries are lost.
    upgraded = caffe_pb2.NetParameter()
    if folded.HasField("name"):
        upgraded.name = folded.name
    for entry in folded.layers:
        _upgrade_v0_layer(entry, upgraded.layers.add(), source)
    upgraded.input.extend(folded.input)
    upgraded.input_dim.extend(folded.input_dim)
    if folded.HasField("force_backward"):
        upgraded.force_backward = folded.force_backward
    return upgraded


def _v0_name(entry: caffe_pb2.V1LayerParameter) -> str:
    return entry.layer.name if entry.HasField("layer") else entry.name


def _fold_padding_layers(net: caffe_pb2.NetParameter, source: str) -> caffe_pb2.NetParameter:
    """UpgradeV0PaddingLayers: drop each "padding" layer, moving its pad into its readers."""
    folded = caffe_pb2.NetParameter()
    folded.CopyFrom(net)
    del folded.layers[:]
    # Index of the layer that last wrote each blob; -1 for a net input.
    writer_of: dict[str, int] = {name: -1 for name in net.input}
    for index, entry in enumerate(net.layers):
        if entry.layer.type != "padding":
            folded.layers.add().CopyFrom(entry)
        for slot, blob in enumerate(entry.bottom):
            if blob not in writer_of:
                raise ProtoUpgradeError(
                    f"{source}: V0 layer '{_v0_name(entry)}' (type '{entry.layer.type}'): "
                    f"bottom '{blob}' is neither a net input nor a top of an earlier layer; "
                    "upgrading a V0 net requires every bottom to be defined before use"
                )
            writer = writer_of[blob]
            if writer == -1 or net.layers[writer].layer.type != "padding":
                continue
            padding = net.layers[writer]
            _check_padding_reader(entry, padding, blob, source)
            reader = folded.layers[-1]
            # Set even when the padding layer had no pad: the reader then gets pad 0.
            reader.layer.pad = padding.layer.pad
            reader.bottom[slot] = padding.bottom[0]
        for blob in entry.top:
            writer_of[blob] = index
    return folded


def _check_padding_reader(
    reader: caffe_pb2.V1LayerParameter,
    padding: caffe_pb2.V1LayerParameter,
    blob: str,
    source: str,
) -> None:
    where = (
        f"{source}: V0 layer '{_v0_name(reader)}' (type '{reader.layer.type}') reads "
        f"bottom '{blob}' from padding layer '{padding.layer.name}'"
    )
    if reader.layer.type not in ("conv", "pool"):
        raise ProtoUpgradeError(
            f"{where}; Caffe folds a padding layer only into a reader of type 'conv' or 'pool'"
        )
    if len(reader.bottom) != 1:
        raise ProtoUpgradeError(
            f"{where}, but has {len(reader.bottom)} bottoms {list(reader.bottom)}; "
            "a conv/pool layer fed by a padding layer must have exactly 1 bottom"
        )
    if len(padding.bottom) != 1:
        raise ProtoUpgradeError(
            f"{where}, but the padding layer has {len(padding.bottom)} bottoms "
            f"{list(padding.bottom)}; a padding layer must have exactly 1 bottom"
        )
    if len(padding.top) != 1:
        raise ProtoUpgradeError(
            f"{where}, but the padding layer has {len(padding.top)} tops "
            f"{list(padding.top)}; a padding layer must have exactly 1 top"
        )


def _upgrade_v0_layer(
    entry: caffe_pb2.V1LayerParameter, upgraded: caffe_pb2.V1LayerParameter, source: str
) -> None:
    """UpgradeV0LayerParameter: one V0 entry into `upgraded`, an empty V1 layer."""
    upgraded.bottom.extend(entry.bottom)
    upgraded.top.extend(entry.top)
    # An entry without a V0 sub-message keeps only its wiring, even its own V1 name
    # and type are lost.
    if not entry.HasField("layer"):
        return
    v0 = entry.layer
    if v0.HasField("name"):
        upgraded.name = v0.name
    if v0.HasField("type"):
        upgraded.type = _v0_type(v0, source)
    upgraded.blobs.extend(v0.blobs)
    upgraded.blobs_lr.extend(v0.blobs_lr)
    upgraded.weight_decay.extend(v0.weight_decay)
    for field, destinations in _V0_FIELDS.items():
        if not v0.HasField(field):
            continue
        destination = destinations.get(v0.type)
        if destination is None:
            _log.warning(
                "%s: V0 layer '%s' (type '%s'): field %s = %s is not used by this layer "
                "type and is dropped, as Caffe does; it applies only to type(s) %s",
                source, v0.name, v0.type, field, _show(v0, field),
                ", ".join(repr(t) for t in destinations),
            )
            continue
        _assign(v0, field, upgraded, destination)
    for field, destination in _V0_TRANSFORM_FIELDS.items():
        if v0.HasField(field):
            _assign(v0, field, upgraded.transform_param, destination)


def _v0_type(v0: caffe_pb2.V0LayerParameter, source: str) -> int:
    try:
        return _V0_TYPES[v0.type]
    except KeyError:
        raise ProtoUpgradeError(
            f"{source}: V0 layer '{v0.name}': type '{v0.type}' is not a V0 layer type; "
            f"Caffe knows {', '.join(sorted(_V0_TYPES))} (and 'padding', folded into "
            "the conv/pool layer that reads it)"
        ) from None


def _assign(src: Message, field: str, dst: Message, path: str) -> None:
    """Sets dst's `path` (dotted, may name sub-messages) from src's `field`, as Caffe's
    set_/add_/mutable_()->CopyFrom would: repeated targets get the value appended,
    enums are matched by name, and every sub-message on the way becomes present."""
    *parents, leaf = path.split(".")
    for name in parents:
        dst = getattr(dst, name)
        dst.SetInParent()
    value = getattr(src, field)
    target = dst.DESCRIPTOR.fields_by_name[leaf]
    if target.message_type is not None:
        getattr(dst, leaf).CopyFrom(value)
    elif target.is_repeated:
        getattr(dst, leaf).append(value)
    elif target.enum_type is not None:
        name = src.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[value].name
        setattr(dst, leaf, target.enum_type.values_by_name[name].number)
    else:
        setattr(dst, leaf, value)


def _show(message: Message, field: str) -> str:
    """A field's value the way a prototxt spells it."""
    value = getattr(message, field)
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    if isinstance(value, Message):
        return "{ " + " ".join(str(value).split()) + " }"
    if descriptor.enum_type is not None:
        return descriptor.enum_type.values_by_number[value].name
    if isinstance(value, float):
        return f"{value:.7g}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


# --- V1 data transformation fields ----------------------------------------------------


def _needs_data_upgrade(net: caffe_pb2.NetParameter) -> bool:
    for layer in net.layers:
        param_name = _V1_DATA_PARAMS.get(layer.type)
        if param_name is None:
            continue
        param = getattr(layer, param_name)
        if any(param.HasField(field) for field in _LEGACY_TRANSFORM_FIELDS):
            return True
    return False


def _upgrade_data_transformation(net: caffe_pb2.NetParameter) -> None:
    for layer in net.layers:
        param_name = _V1_DATA_PARAMS.get(layer.type)
        if param_name is None:
            continue
        param = getattr(layer, param_name)
        # Caffe takes mutable_ pointers to both messages before looking inside, so
        # every data layer of the net ends up with both present, possibly empty.
        param.SetInParent()
        layer.transform_param.SetInParent()
        for field in _LEGACY_TRANSFORM_FIELDS:
            if param.HasField(field):
                setattr(layer.transform_param, field, getattr(param, field))
                param.ClearField(field)


# --- V1 -> V2 -------------------------------------------------------------------------


def _needs_v1_to_v2(net: caffe_pb2.NetParameter) -> bool:
    return len(net.layers) > 0


def _upgrade_v1_net(net: caffe_pb2.NetParameter, source: str) -> caffe_pb2.NetParameter:
    if len(net.layer) > 0:
        raise ProtoUpgradeError(
            f"{source}: the net has both 'layer' entries ({len(net.layer)}, first "
            f"'{net.layer[0].name}') and legacy V1 'layers' entries ({len(net.layers)}, "
            f"first '{net.layers[0].name}'); Caffe refuses to upgrade such a net. Use only "
            "the current format: layer { type: \"ReLU\" ... }, not layers { type: RELU ... }"
        )
    upgraded = caffe_pb2.NetParameter()
    upgraded.CopyFrom(net)
    del upgraded.layers[:]
    for v1 in net.layers:
        _upgrade_v1_layer(v1, upgraded.layer.add(), source)
    return upgraded


def _param_spec(layer: caffe_pb2.LayerParameter, index: int) -> caffe_pb2.ParamSpec:
    while len(layer.param) <= index:
        layer.param.add()
    return layer.param[index]


def _upgrade_v1_layer(
    v1: caffe_pb2.V1LayerParameter, layer: caffe_pb2.LayerParameter, source: str
) -> None:
    """UpgradeV1LayerParameter: one V1 layer into `layer`, an empty current-format one."""
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = _V1_TYPES[v1.type]
    layer.blobs.extend(v1.blobs)
    # The four per-blob lists may differ in length; each ParamSpec is created by the
    # first list long enough to reach it, so gaps hold default (empty) ParamSpecs.
    for index, name in enumerate(v1.param):
        _param_spec(layer, index).name = name
    for index, mode in enumerate(v1.blob_share_mode):
        mode_name = _V1.DimCheckMode.Name(mode)
        _param_spec(layer, index).share_mode = caffe_pb2.ParamSpec.DimCheckMode.Value(mode_name)
    for index, lr in enumerate(v1.blobs_lr):
        _param_spec(layer, index).lr_mult = lr
    for index, decay in enumerate(v1.weight_decay):
        _param_spec(layer, index).decay_mult = decay
    layer.loss_weight.extend(v1.loss_weight)
    for field in _V1_TYPED_PARAMS:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))
    if v1.HasField("layer"):
        # Unreachable through upgrade_net (any V0 entry sends the whole net through the
        # V0 upgrade first); kept because Caffe logs it too.
        _log.warning("%s: V1 layer '%s' also holds a V0 layer; ignoring it, as Caffe does",
                     source, v1.name)


# --- net-level inputs -> Input layer ---------------------------------------------------


def _needs_input_upgrade(net: caffe_pb2.NetParameter) -> bool:
    return len(net.input) > 0


def _upgrade_input_fields(net: caffe_pb2.NetParameter, source: str) -> None:
    has_shape = len(net.input_shape) > 0
    has_dim = len(net.input_dim) > 0
    # Names alone come from old caffemodels, whose net definition lives elsewhere.
    if has_shape or has_dim:
        _check_input_fields(net, source)
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        layer.input_param.SetInParent()
        for index, name in enumerate(net.input):
            layer.top.append(name)
            shape = layer.input_param.shape.add()
            if has_shape:
                shape.CopyFrom(net.input_shape[index])
            else:
                shape.dim.extend(net.input_dim[4 * index:4 * index + 4])
        net.layer.insert(0, layer)
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def _check_input_fields(net: caffe_pb2.NetParameter, source: str) -> None:
    # Caffe 1.0 indexes these lists without checking them (too few values read past the
    # end of the list, or crash); the checks are those of Caffe's own Net::Init from
    # before the Input layer existed.
    names = list(net.input)
    if len(net.input_shape) > 0:
        if len(net.input_dim) > 0:
            _log.warning(
                "%s: net has both input_shape and input_dim for inputs %s; input_dim = %s "
                "is ignored, as Caffe 1.0 does", source, names, list(net.input_dim),
            )
        if len(net.input_shape) != len(names):
            raise ProtoUpgradeError(
                f"{source}: net-level input_shape has {len(net.input_shape)} entries for "
                f"{len(names)} input(s) {names}; exactly one input_shape is needed per input"
            )
    elif len(net.input_dim) != 4 * len(names):
        raise ProtoUpgradeError(
            f"{source}: net-level input_dim has {len(net.input_dim)} values "
            f"{list(net.input_dim)} for {len(names)} input(s) {names}; exactly 4 per input "
            f"(num, channels, height, width) are needed, {4 * len(names)} in all"
        )


# --- BatchNorm ParamSpecs ---------------------------------------------------------------


def _is_legacy_batch_norm(layer: caffe_pb2.LayerParameter) -> bool:
    # Before BatchNorm froze its statistics blobs itself, nets had to list three
    # ParamSpecs (usually lr_mult: 0) for them; Caffe now forces them all to zero.
    return layer.type == "BatchNorm" and len(layer.param) == 3


def _needs_batch_norm_upgrade(net: caffe_pb2.NetParameter) -> bool:
    return any(_is_legacy_batch_norm(layer) for layer in net.layer)


def _upgrade_batch_norm(net: caffe_pb2.NetParameter) -> None:
    for layer in net.layer:
        if _is_legacy_batch_norm(layer):
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
