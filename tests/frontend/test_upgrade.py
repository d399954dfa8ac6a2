"""caffe_fx.frontend.upgrade against BVLC Caffe 1.0's own upgrade of legacy nets.

Every expected net here was written by real Caffe (upgrade_net_proto_text and
upgrade_net_proto_binary, run by tools/make_upgrade_goldens.py) into
tests/golden/upgrade/; cases.json records what Caffe did with each input, including
which inputs it aborted on. Comparisons are between parsed NetParameter messages.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffe_fx.errors import ProtoUpgradeError
from caffe_fx.frontend import upgrade
from caffe_fx.frontend.upgrade import needs_upgrade, upgrade_net
from caffe_fx.proto import caffe_pb2

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
MODELS = SHARED / "models"
LEGACY = Path(__file__).resolve().parent / "legacy"
GOLDEN = REPO / "tests" / "golden" / "upgrade"
CASES: dict[str, dict] = json.loads((GOLDEN / "cases.json").read_text())

needs_shared = pytest.mark.skipif(
    not MODELS.is_dir(), reason=f"needs {MODELS} (the published caffemodels these facts record)")

ERRORS = sorted(name for name in CASES if name.startswith("error_"))
UPGRADED = sorted(name for name, case in CASES.items()
                  if case["caffe"]["status"] in ("ok", "warnings") and name not in ERRORS)

# Each error case, and what our message must say (source, layer, field/value, what is allowed).
ERROR_MESSAGES: dict[str, str] = {
    "error_both_layer_and_layers":
        r"both_layer_and_layers\.prototxt: the net has both 'layer' entries \(1, first "
        r"'relu_v2'\) and legacy V1 'layers' entries \(1, first 'relu_v1'\); Caffe refuses"
        r".*Use only the current format",
    "error_v0_unknown_type":
        r"v0_unknown_type\.prototxt: V0 layer 'prelu1': type 'prelu' is not a V0 layer type; "
        r"Caffe knows accuracy, bnll, concat, conv, .*window_data \(and 'padding'",
    "error_v0_empty_type":
        r"v0_empty_type\.prototxt: V0 layer 'blank': type '' is not a V0 layer type",
    "error_v0_padding_into_relu":
        r"v0_padding_into_relu\.prototxt: V0 layer 'relu1' \(type 'relu'\) reads bottom 'pad1' "
        r"from padding layer 'pad1'; Caffe folds a padding layer only into a reader of type "
        r"'conv' or 'pool'",
    "error_v0_padding_into_two_bottom_conv":
        r"V0 layer 'conv1' \(type 'conv'\) reads bottom 'pad1' from padding layer 'pad1', but "
        r"has 2 bottoms \['pad1', 'other'\]; a conv/pool layer fed by a padding layer must "
        r"have exactly 1 bottom",
    "error_v0_padding_two_bottoms":
        r"V0 layer 'pool1' \(type 'pool'\) reads bottom 'pad1' from padding layer 'pad1', but "
        r"the padding layer has 2 bottoms \['data', 'other'\]; a padding layer must have "
        r"exactly 1 bottom",
    "error_v0_padding_two_tops":
        r"the padding layer has 2 tops \['pad1', 'pad1b'\]; a padding layer must have exactly "
        r"1 top",
    "error_v0_unknown_bottom":
        r"v0_unknown_bottom\.prototxt: V0 layer 'conv1' \(type 'conv'\): bottom 'missing' is "
        r"neither a net input nor a top of an earlier layer",
    "error_input_dim_count":
        r"input_dim_count\.prototxt: net-level input_dim has 3 values \[1, 3, 8\] for 1 "
        r"input\(s\) \['data'\]; exactly 4 per input \(num, channels, height, width\)",
    "error_input_shape_count":
        r"input_shape_count\.prototxt: net-level input_shape has 1 entries for 2 input\(s\) "
        r"\['data', 'label'\]; exactly one input_shape is needed per input",
}

# Where we refuse a net that Caffe 1.0 accepts: it reads past the end of input_dim
# (undefined behaviour; here it invented a 0), and Caffe before the Input layer
# rejected the same net with "Incorrect input blob dimension specifications".
STRICTER_THAN_CAFFE = {"error_input_dim_count"}


def _input_path(name: str) -> Path:
    case = CASES[name]
    base = SHARED if case["root"] == "shared" else REPO
    return base / case["input"]


def _parse_text(path: Path) -> caffe_pb2.NetParameter:
    return text_format.Parse(path.read_text(), caffe_pb2.NetParameter())


def _legacy(name: str) -> caffe_pb2.NetParameter:
    path = _input_path(name)
    if CASES[name]["root"] == "shared" and not MODELS.is_dir():
        pytest.skip(f"needs {path} (a published net in ../shared/models)")
    return _parse_text(path)


def _diff(ours: caffe_pb2.NetParameter, caffe: caffe_pb2.NetParameter) -> str:
    import difflib

    return "\n".join(difflib.unified_diff(
        text_format.MessageToString(caffe).splitlines(),
        text_format.MessageToString(ours).splitlines(),
        "caffe", "caffe_fx", lineterm="", n=2,
    ))


@pytest.mark.parametrize("name", UPGRADED)
def test_matches_caffe(name: str) -> None:
    net = _legacy(name)
    ours = upgrade_net(net, str(_input_path(name)))
    caffe = _parse_text(GOLDEN / f"{name}.prototxt")
    assert ours == caffe, _diff(ours, caffe)


@pytest.mark.parametrize("name", UPGRADED)
def test_needs_upgrade_agrees_with_caffe(name: str) -> None:
    # upgrade_net_proto_text says so when NetNeedsUpgrade is false.
    current = any("File already in latest proto format" in message
                  for message in CASES[name]["caffe"]["messages"])
    assert needs_upgrade(_legacy(name)) is not current


@pytest.mark.parametrize("name", UPGRADED)
def test_upgrade_is_idempotent(name: str) -> None:
    # needs_upgrade() may stay true: a BatchNorm with three ParamSpecs still has three.
    once = upgrade_net(_legacy(name))
    assert upgrade_net(once) == once


@pytest.mark.parametrize("name", UPGRADED)
def test_argument_is_not_mutated(name: str) -> None:
    net = _legacy(name)
    before = net.SerializeToString(deterministic=True)
    result = upgrade_net(net)
    assert result is not net
    assert net.SerializeToString(deterministic=True) == before
    # Nothing in the result aliases the argument either.
    for layer in result.layer:
        layer.name += "_changed"
        for blob in layer.blobs:
            blob.data.append(1.0)
    assert net.SerializeToString(deterministic=True) == before


def test_current_net_comes_back_as_an_equal_copy() -> None:
    net = _legacy("v2_current")
    result = upgrade_net(net)
    assert result == net and result is not net


def test_dropped_v0_fields_are_logged_like_caffe(caplog: pytest.LogCaptureFixture) -> None:
    caffe_names = {"shuffle": "shuffle_images"}  # Caffe's message abbreviates this one
    caffe_logged = []
    for message in CASES["v0_quirks"]["caffe"]["messages"]:
        match = re.fullmatch(r"E: Unknown parameter (\w+) for layer type ?(\w*)", message)
        if match:
            caffe_logged.append((caffe_names.get(match[1], match[1]), match[2]))
    assert CASES["v0_quirks"]["caffe"]["status"] == "warnings"
    assert caffe_logged, "the golden should record Caffe's complaints"

    with caplog.at_level(logging.WARNING, logger=upgrade.__name__):
        upgrade_net(_legacy("v0_quirks"), "v0_quirks.prototxt")
    ours = [(record.args[3], record.args[2]) for record in caplog.records
            if "is not used by this layer type" in record.getMessage()]
    assert sorted(ours) == sorted(caffe_logged)
    first = caplog.records[0].getMessage()
    assert first.startswith("v0_quirks.prototxt: V0 layer 'relu_with_extras' (type 'relu'): "
                            "field num_output = 3 is not used")
    assert first.endswith("it applies only to type(s) 'conv', 'innerproduct'")


def test_input_shape_wins_over_input_dim_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=upgrade.__name__):
        upgrade_net(_legacy("v2_input_shape_and_dim"), "both.prototxt")
    assert any("input_dim = [1, 3, 8, 8] is ignored" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ERRORS)
def test_error_cases_raise(name: str) -> None:
    assert name in ERROR_MESSAGES, f"add the expected message of {name}"
    net = _parse_text(_input_path(name))
    with pytest.raises(ProtoUpgradeError, match=ERROR_MESSAGES[name]):
        upgrade_net(net, str(_input_path(name)))


@pytest.mark.parametrize("name", ERRORS)
def test_caffe_rejects_the_error_cases(name: str) -> None:
    status = CASES[name]["caffe"]["status"]
    if name in STRICTER_THAN_CAFFE:
        assert status == "ok"
    else:
        assert status in ("fatal", "crash")


def test_error_is_a_value_error() -> None:
    net = _parse_text(_input_path("error_v0_unknown_type"))
    with pytest.raises(ValueError):
        upgrade_net(net)


def test_default_source_is_named() -> None:
    net = _parse_text(_input_path("error_v0_unknown_type"))
    with pytest.raises(ProtoUpgradeError, match=r"^<net>: V0 layer 'prelu1'"):
        upgrade_net(net)


# --- the tables against the schema ------------------------------------------------------


def test_v1_type_table_covers_the_enum() -> None:
    assert set(upgrade._V1_TYPES) == set(caffe_pb2.V1LayerParameter.LayerType.values())


def test_every_v1_typed_param_is_copied() -> None:
    v1_params = {field.name for field in caffe_pb2.V1LayerParameter.DESCRIPTOR.fields
                 if field.message_type is not None and field.name.endswith("_param")}
    assert set(upgrade._V1_TYPED_PARAMS) == v1_params
    for name in v1_params:
        assert name in caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name


def test_v0_field_table_resolves_in_the_schema() -> None:
    v0_fields = caffe_pb2.V0LayerParameter.DESCRIPTOR.fields_by_name
    for field, destinations in upgrade._V0_FIELDS.items():
        assert field in v0_fields
        assert set(destinations) <= set(upgrade._V0_TYPES)
        for path in destinations.values():
            descriptor = caffe_pb2.V1LayerParameter.DESCRIPTOR
            *parents, leaf = path.split(".")
            for parent in parents:
                descriptor = descriptor.fields_by_name[parent].message_type
            assert leaf in descriptor.fields_by_name, path


# --- a binary V1 caffemodel ------------------------------------------------------------

BINARY_FACTS = sorted(GOLDEN.glob("*_iter_*.json"))


def _digest(blob: caffe_pb2.BlobProto) -> str:
    if len(blob.double_data):
        values = np.asarray(blob.double_data, dtype=np.float64)
    else:
        values = np.asarray(blob.data, dtype=np.float32)
    return hashlib.sha256(values.tobytes()).hexdigest()


def _legacy_shape_matches(blob: caffe_pb2.BlobProto, shape: list[int]) -> bool:
    # Blob::ShapeEquals: a legacy 4-D blob proto fits a blob of at most 4 axes whose
    # shape, right-aligned and padded with 1s, equals (num, channels, height, width).
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return len(shape) <= 4 and [1] * (4 - len(shape)) + shape == [
            blob.num, blob.channels, blob.height, blob.width]
    return list(blob.shape.dim) == shape


@needs_shared
@pytest.mark.parametrize("facts_path", BINARY_FACTS, ids=lambda p: p.stem)
def test_binary_caffemodel_matches_caffe(facts_path: Path) -> None:
    facts = json.loads(facts_path.read_text())
    model = MODELS / facts["weights"]
    raw = model.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == facts["weights_sha256"]
    net = caffe_pb2.NetParameter.FromString(raw)
    assert len(net.layers) and not len(net.layer), "expected a V1 caffemodel"

    ours = upgrade_net(net, str(model))

    # Identical to upgrade_net_proto_binary's output: structure, then blob values.
    digests = {layer.name: [_digest(blob) for blob in layer.blobs]
               for layer in ours.layer if len(layer.blobs)}
    assert digests == facts["caffe_blob_sha256"]
    stripped = caffe_pb2.NetParameter()
    stripped.CopyFrom(ours)
    for layer in stripped.layer:
        for blob in layer.blobs:
            blob.ClearField("data")
            blob.ClearField("diff")
    caffe = text_format.Parse(facts["caffe_upgraded_without_data"], caffe_pb2.NetParameter())
    assert stripped == caffe, _diff(stripped, caffe)

    # What Caffe's Net reports after loading these weights into the matching deploy net.
    by_name = {layer.name: layer for layer in ours.layer}
    with_params = [layer for layer in facts["caffe_net"]["layers"] if layer["param_shapes"]]
    assert sorted(layer["name"] for layer in with_params) == sorted(digests)
    for caffe_layer in with_params:
        layer = by_name[caffe_layer["name"]]
        assert layer.type == caffe_layer["type"]
        assert len(layer.blobs) == len(caffe_layer["param_shapes"])
        for blob, shape in zip(layer.blobs, caffe_layer["param_shapes"], strict=True):
            assert _legacy_shape_matches(blob, shape), (layer.name, shape)
