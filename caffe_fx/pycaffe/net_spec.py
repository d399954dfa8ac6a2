"""pycaffe's `caffe.net_spec`: write Caffe nets as Python calls, on caffe_fx's bundled schema.

Mirrors BVLC Caffe 1.0 python/caffe/net_spec.py: `L.<Type>(*bottoms, **fields)` makes a
layer, assigning its tops to a `NetSpec` names them, and `to_proto` returns the same
`caffe_pb2.NetParameter` (layers, order, names, field values) pycaffe returns.
`pycaffe_text` prints it byte for byte as pycaffe 1.0's `str()` does.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Union

from google.protobuf import text_encoding
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..errors import NetSpecError, NetSpecFieldError
from ..proto import caffe_pb2

__all__ = [
    "Function",
    "L",
    "NetSpec",
    "P",
    "Top",
    "assign_proto",
    "layers",
    "param_name_dict",
    "params",
    "pycaffe_text",
    "to_proto",
]

# What a NetSpec attribute or a to_proto argument may hold: a layer's output, or a
# layer with no outputs (`ntop=0`, e.g. Silence).
Node = Union["Top", "Function"]
# Names being handed out during one to_proto call: Tops and Functions -> names.
Names = dict[Any, str]


def param_name_dict() -> dict[str, str]:
    """Layer type -> stem of its own parameter field, e.g. {'InnerProduct': 'inner_product'}.

    Derived as pycaffe does from LayerParameter's `*_param` fields, pairing each field
    name with its message type name (`inner_product_param: InnerProductParameter`).
    Some entries name no layer type (`Transformation`, `Loss`); they are never hit.
    """
    table: dict[str, str] = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name.removesuffix("Parameter")
            table[type_name] = field.name.removesuffix("_param")
    return table


def _is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 5.28; `label` before
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _field(proto: Message, name: str) -> FieldDescriptor:
    field = proto.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        known = ", ".join(sorted(proto.DESCRIPTOR.fields_by_name))
        raise NetSpecFieldError(
            f"{proto.DESCRIPTOR.name} has no field '{name}'; its fields: {known}")
    return field


def assign_proto(proto: Message, name: str, val: Any) -> None:
    """Stores a Python value in field `name` of `proto`, recursively, as pycaffe does.

    A list fills a repeated field (a list of dicts adds one sub-message per dict), a
    dict fills a sub-message key by key, anything else is assigned.  A single value for
    a repeated field counts as a one-element list (`dim=3` is `dim=[3]`).

    Raises:
        NetSpecFieldError (an AttributeError, as pycaffe's): no such field, a list
            for a field that is not repeated, a dict for one that is not a message.
        NetSpecError (a TypeError): a list of dicts holding something else.
        TypeError/ValueError from protobuf: a value of the wrong type or range.
    """
    field = _field(proto, name)
    repeated = _is_repeated(field)
    if repeated and not isinstance(val, list):
        val = [val]
    if isinstance(val, list):
        if not repeated:
            raise NetSpecFieldError(
                f"{proto.DESCRIPTOR.name}.{name} is not repeated; a list was given: {val!r}")
        container = getattr(proto, name)
        if val and isinstance(val[0], dict):
            if field.message_type is None:
                raise NetSpecFieldError(
                    f"{proto.DESCRIPTOR.name}.{name} holds no messages; dicts were given: "
                    f"{val!r}")
            for item in val:
                if not isinstance(item, dict):
                    raise NetSpecError(
                        f"{proto.DESCRIPTOR.name}.{name}: a list of dicts holds {item!r}")
                sub = container.add()
                for key, value in item.items():
                    assign_proto(sub, key, value)
        else:
            container.extend(val)
    elif isinstance(val, dict):
        if field.message_type is None:
            raise NetSpecFieldError(
                f"{proto.DESCRIPTOR.name}.{name} is not a message; a dict was given: {val!r}")
        sub = getattr(proto, name)
        for key, value in val.items():
            assign_proto(sub, key, value)
    else:
        setattr(proto, name, val)


class Top:
    """Output number `n` of the layer `fn`: what `L.<Type>(...)` returns, and what
    later layers take as bottoms."""

    def __init__(self, fn: Function, n: int) -> None:
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The layers needed to compute this top, with automatic names only."""
        return to_proto(self)

    def _to_proto(self, layers: OrderedDict[Function, caffe_pb2.LayerParameter],
                  names: Names, autonames: Counter[str]) -> None:
        self.fn._to_proto(layers, names, autonames)


class Function:
    """One layer: its type, its bottoms (Tops of other layers) and its keyword fields.

    `ntop` (default 1) and `in_place` (tops take the bottoms' names) are taken out of
    `params`; every other keyword becomes a field when the layer is emitted.
    """

    def __init__(self, type_name: str, inputs: tuple[Top, ...], params: dict[str, Any]) -> None:
        self.type_name = type_name
        for index, bottom in enumerate(inputs):
            if not isinstance(bottom, Top):
                raise NetSpecError(
                    f"{type_name} bottom {index} is not a Top (a layer's output) but "
                    f"{type(bottom).__name__}: {bottom!r}")
        self.inputs = inputs
        self.params = params
        self.ntop: int = params.pop("ntop", 1)
        self.in_place: bool = params.pop("in_place", False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names: Names, autonames: Counter[str]) -> str:
        # A layer is named after its first top (an assigned in-place ReLU `relu1`
        # is layer 'relu1' writing blob 'conv1'), else `<Type><k>`.
        if self not in names:
            if self.ntop > 0:
                names[self] = self._get_top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = f"{self.type_name}{autonames[self.type_name]}"
        return names[self]

    def _get_top_name(self, top: Top, names: Names, autonames: Counter[str]) -> str:
        if top not in names:
            kind = top.fn.type_name
            autonames[kind] += 1
            names[top] = f"{kind}{autonames[kind]}"
        return names[top]

    def _to_proto(self, layers: OrderedDict[Function, caffe_pb2.LayerParameter],
                  names: Names, autonames: Counter[str]) -> None:
        if self in layers:
            return
        bottoms = []
        for bottom in self.inputs:
            bottom._to_proto(layers, names, autonames)
            bottoms.append(layers[bottom.fn].top[bottom.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottoms)
        if self.in_place:
            layer.top.extend(bottoms)
        else:
            layer.top.extend(self._get_top_name(top, names, autonames) for top in self.tops)
        # Named only after the tops: the order in which automatic names are drawn is
        # part of pycaffe's output.
        layer.name = self._get_name(names, autonames)
        for key, value in self.params.items():
            self._assign(layer, key, value)
        layers[self] = layer

    def _assign(self, layer: caffe_pb2.LayerParameter, key: str, value: Any) -> None:
        # `*param` keywords (convolution_param=, param=, transform_param=) belong to the
        # layer; any other keyword is tried on the type's own message first, then on
        # the layer (loss_weight=, include=, name=), as pycaffe does.
        own: Message | None = None
        own_error: AttributeError | None = None
        try:
            if not key.endswith("param") and self.type_name in _PARAM_NAMES:
                own = getattr(layer, f"{_PARAM_NAMES[self.type_name]}_param")
                try:
                    assign_proto(own, key, value)
                    return
                except AttributeError as e:
                    own_error = e
            assign_proto(layer, key, value)
        except NetSpecError as e:
            raise type(e)(f"{self._where(layer)}: {e}") from e
        except AttributeError as e:
            raise NetSpecFieldError(self._field_problem(layer, key, value, own, own_error, e)) \
                from e
        except (TypeError, ValueError) as e:
            raise NetSpecError(f"{self._where(layer)}: keyword {key}={value!r}: {e}") from e

    def _where(self, layer: caffe_pb2.LayerParameter) -> str:
        return f"layer '{layer.name}' ({self.type_name})"

    def _field_problem(self, layer: caffe_pb2.LayerParameter, key: str, value: Any,
                       own: Message | None, own_error: AttributeError | None,
                       layer_error: AttributeError) -> str:
        where, given = self._where(layer), f"keyword {key}={value!r}"
        if own is not None and own_error is not None and key in own.DESCRIPTOR.fields_by_name:
            return f"{where}: {given}: {own_error}"  # the type's own field, deeper down
        if key in layer.DESCRIPTOR.fields_by_name:
            return f"{where}: {given}: {layer_error}"
        if own is None:
            return f"{where}: {given} names no field of LayerParameter"
        fields = ", ".join(sorted(own.DESCRIPTOR.fields_by_name))
        return (f"{where}: {given} names no field of {own.DESCRIPTOR.name} ({fields}) "
                "nor of LayerParameter")


def _emit(nodes: Iterator[tuple[Node, Names]]) -> caffe_pb2.NetParameter:
    layers: OrderedDict[Function, caffe_pb2.LayerParameter] = OrderedDict()
    autonames: Counter[str] = Counter()
    for node, names in nodes:
        if not isinstance(node, (Top, Function)):
            raise NetSpecError(
                f"to_proto takes Tops (layer outputs) or ntop=0 layers, not "
                f"{type(node).__name__}: {node!r}; a layer with ntop > 1 returns a tuple, "
                "assign its tops one by one (n.a, n.b = L.Slice(..., ntop=2))")
        node._to_proto(layers, names, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


def to_proto(*tops: Node) -> caffe_pb2.NetParameter:
    """A NetParameter holding every layer needed to compute `tops`, all named
    automatically (`Convolution1`, ...)."""
    # pycaffe starts each top with an empty name table but one shared counter.
    return _emit((top, {}) for top in tops)


class NetSpec:
    """Named tops: `n.conv1 = L.Convolution(n.data, ...)`; `n.to_proto()` emits every
    layer they need, in assignment order, under the assigned names."""

    tops: OrderedDict[str, Node]

    def __init__(self) -> None:
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name: str, value: Node) -> None:
        self.tops[name] = value

    def __getattr__(self, name: str) -> Node:
        if name == "tops":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError(
                f"NetSpec has no top '{name}'; assigned: {', '.join(self.tops) or 'none'}"
            ) from None

    def __setitem__(self, key: str, value: Node) -> None:
        self.__setattr__(key, value)

    def __getitem__(self, item: str) -> Node:
        return self.tops[item]

    def to_proto(self) -> caffe_pb2.NetParameter:
        """The NetParameter of all assigned tops; a top assigned twice keeps its last name."""
        names: Names = {value: key for key, value in self.tops.items()}
        return _emit((top, names) for top in self.tops.values())


class Layers:
    """`layers.Convolution(bottom, kernel_size=3)`: a layer of any type, by attribute.

    Returns the layer's Top, a tuple of Tops when `ntop > 1`, or the Function itself
    when `ntop=0`.
    """

    def __getattr__(self, type_name: str) -> Callable[..., Top | tuple[Top, ...] | Function]:
        if type_name.startswith("__"):
            raise AttributeError(type_name)

        def layer(*bottoms: Top, **fields: Any) -> Top | tuple[Top, ...] | Function:
            fn = Function(type_name, bottoms, fields)
            if fn.ntop == 0:
                return fn
            return fn.tops[0] if fn.ntop == 1 else fn.tops

        layer.__name__ = layer.__qualname__ = type_name
        return layer


class _Enums:
    """The enum constants of one `<Type>Parameter` message: `params.Pooling.MAX`."""

    def __init__(self, type_name: str) -> None:
        self._type_name = type_name

    def __getattr__(self, name: str) -> int:
        message = f"{self._type_name}Parameter"
        cls = getattr(caffe_pb2, message, None)
        if cls is None:
            raise AttributeError(f"caffe_pb2 has no message {message}")
        values = {v.name: v.number for e in cls.DESCRIPTOR.enum_types for v in e.values}
        if name not in values:
            raise AttributeError(
                f"{message} has no enum value '{name}'; its values: "
                f"{', '.join(values) or 'none'}")
        return values[name]


class Parameters:
    """`params.Pooling.MAX` is caffe_pb2.PoolingParameter.MAX."""

    def __getattr__(self, type_name: str) -> _Enums:
        if type_name.startswith("__"):
            raise AttributeError(type_name)
        return _Enums(type_name)


_PARAM_NAMES = param_name_dict()
layers = L = Layers()
params = P = Parameters()


def pycaffe_text(message: Message) -> str:
    """`message` as pycaffe 1.0's `str(message)` prints it (protobuf 3.12, C++ backend).

    Newer protobuf prints floats by their shortest float32 spelling (`std: 0.01`);
    pycaffe 1.0 printed the float32 widened to a double, as Python's `str` does
    (`std: 0.009999999776482582`, `mean_value: 104.0`).  Both parse to the same net.
    """
    out: list[str] = []
    _print_message(message, "", out)
    return "".join(out)


def _print_message(message: Message, indent: str, out: list[str]) -> None:
    for field, value in message.ListFields():  # in field-number order, as C++ prints
        for item in (value if _is_repeated(field) else (value,)):
            if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                out.append(f"{indent}{field.name} {{\n")
                _print_message(item, indent + "  ", out)
                out.append(f"{indent}}}\n")
            else:
                out.append(f"{indent}{field.name}: {_scalar_text(field, item)}\n")


def _scalar_text(field: FieldDescriptor, value: Any) -> str:
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        known = field.enum_type.values_by_number.get(value)
        return known.name if known is not None else str(value)
    if kind == FieldDescriptor.CPPTYPE_STRING:
        raw = value.encode("utf-8") if isinstance(value, str) else value
        return f'"{text_encoding.CEscape(raw, False)}"'
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return "true" if value else "false"
    if kind in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return str(float(value))
    return str(value)
