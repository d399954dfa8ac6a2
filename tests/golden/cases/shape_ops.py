"""Golden cases for Concat, Slice, Split, Flatten, Reshape, Crop and Tile."""
from . import Case, input_net


def _case(kind: str, name: str, layers: str, inputs: dict) -> Case:
    return Case(f"{kind.lower()}-{name}", kind, input_net(inputs) + layers, inputs)


def concat(name: str, params: str, shapes) -> Case:
    inputs = {f"x{i}": s for i, s in enumerate(shapes)}
    bottoms = " ".join(f'bottom: "{b}"' for b in inputs)
    layer = ('layer { name: "cat" type: "Concat" %s top: "cat"\n'
             '  concat_param { %s } }\n' % (bottoms, params))
    return _case("Concat", name, layer, inputs)


def slice_(name: str, params: str, ntops: int, shape=(2, 6, 4, 3)) -> Case:
    tops = " ".join(f'top: "s{i}"' for i in range(ntops))
    layer = ('layer { name: "slice" type: "Slice" bottom: "data" %s\n'
             '  slice_param { %s } }\n' % (tops, params))
    return _case("Slice", name, layer, {"data": shape})


def one(kind: str, name: str, params: str, shape=(2, 3, 4, 5)) -> Case:
    field = {"Flatten": "flatten_param", "Reshape": "reshape_param", "Tile": "tile_param"}[kind]
    layer = ('layer { name: "op" type: "%s" bottom: "data" top: "op"\n'
             '  %s { %s } }\n' % (kind, field, params))
    return _case(kind, name, layer, {"data": shape})


def crop(name: str, params: str, shape=(2, 4, 7, 8), ref=(2, 4, 3, 5)) -> Case:
    layer = ('layer { name: "crop" type: "Crop" bottom: "data" bottom: "ref" top: "crop"\n'
             '  crop_param { %s } }\n' % params)
    return _case("Crop", name, layer, {"data": shape, "ref": ref})


_SPLIT_IMPLICIT = (
    # `data` feeds two layers, and `fl` feeds two more: Caffe inserts
    # data_input_0_split and fl_fl_0_split, whose tops are compared as well.
    'layer { name: "fl" type: "Flatten" bottom: "data" top: "fl" }\n'
    'layer { name: "sc" type: "Scale" bottom: "data" top: "sc" }\n'
    'layer { name: "t1" type: "Tile" bottom: "fl" top: "t1" tile_param { tiles: 2 } }\n'
    'layer { name: "t2" type: "Tile" bottom: "fl" top: "t2" tile_param { tiles: 3 axis: 0 } }\n'
)
_SPLIT_EXPLICIT = (
    'layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" top: "c" }\n'
    'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n'
)

CASES = [
    concat("channels", "", [(2, 3, 4, 5), (2, 2, 4, 5)]),
    concat("axis0", "axis: 0", [(2, 3, 4, 5), (1, 3, 4, 5), (3, 3, 4, 5)]),
    concat("axis_neg", "axis: -1", [(2, 3, 4, 5), (2, 3, 4, 2)]),
    concat("concat_dim", "concat_dim: 2", [(2, 3, 4, 5), (2, 3, 1, 5)]),
    concat("single", "", [(2, 3, 4, 5)]),
    slice_("points", "slice_point: 1 slice_point: 4", 3),
    slice_("equal", "", 3),
    slice_("axis", "axis: 2 slice_point: 3", 2),
    slice_("axis_neg_equal", "axis: -1", 3),
    slice_("slice_dim", "slice_dim: 0", 2),
    slice_("single", "", 1),
    _case("Split", "implicit", _SPLIT_IMPLICIT, {"data": (2, 3, 4, 5)}),
    _case("Split", "explicit", _SPLIT_EXPLICIT, {"data": (2, 3, 4, 5)}),
    one("Flatten", "default", ""),
    one("Flatten", "axis_end", "axis: 1 end_axis: 2"),
    one("Flatten", "neg", "axis: -3 end_axis: -2"),
    one("Flatten", "axis0", "axis: 0"),
    one("Flatten", "single_axis", "axis: 2 end_axis: 2"),
    one("Reshape", "zero_minus1", "shape { dim: 0 dim: -1 }"),
    one("Reshape", "explicit", "shape { dim: 6 dim: 20 }"),
    one("Reshape", "copy_inner", "shape { dim: 2 dim: 0 dim: -1 dim: 5 }", shape=(2, 3, 4, 5)),
    one("Reshape", "axis1", "axis: 1 shape { dim: 3 dim: -1 }"),
    one("Reshape", "axis_neg_append", "axis: -1 shape { dim: 1 dim: 1 }"),
    one("Reshape", "axis_neg2", "axis: -2 shape { dim: -1 }"),
    one("Reshape", "num_axes", "axis: 1 num_axes: 2 shape { dim: 12 }"),
    one("Reshape", "num_axes0_insert", "axis: 2 num_axes: 0 shape { dim: 1 }"),
    crop("default", ""),
    crop("one_offset", "offset: 2"),
    crop("offsets", "offset: 3 offset: 1"),
    crop("axis1", "axis: 1 offset: 1 offset: 2 offset: 0", ref=(2, 2, 4, 8)),
    crop("axis_neg", "axis: -1 offset: 3", ref=(5, 5, 5, 5)),
    one("Tile", "default", "tiles: 2"),
    one("Tile", "axis0", "axis: 0 tiles: 3"),
    one("Tile", "axis_neg", "axis: -1 tiles: 2"),
]
