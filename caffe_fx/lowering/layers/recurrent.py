"""RNN, LSTM (recurrent_param) and LSTMUnit: Caffe's recurrent layers, unrolled in time.

Mirrors src/caffe/layers/{recurrent,rnn,lstm,lstm_unit}_layer.cpp.  Bottoms in Caffe's
order: x (T, N, ...; at least 3 axes, D = count from axis 2), cont (T, N) (0 starts a
new sequence: the hidden state is
multiplied by cont), an optional static input x_static (N, ...), and with
`expose_hidden` h0 (and c0 for LSTM), each (1, N, num_output); tops h (RNN: o) of shape
(T, N, num_output), then with `expose_hidden` hT (and cT), (1, N, num_output).

Blobs, in Caffe's order and under the names of the unrolled net's ParamSpecs:
LSTM `W_xc` (4H, D), `b_c` (4H), [`W_xc_static` (4H, D_static)], `W_hc` (4H, H); RNN
`W_xh` (H, D), `b_h` (H), [`W_xh_static`], `W_hh` (H, H), `W_ho` (H, H), `b_o` (H);
weights from `weight_filler`, biases from `bias_filler`.  Gates are i, f, o, g
(ops/recurrent.py).

As in Caffe: no gradient reaches cont, nor h0/c0 (the unrolled net shares only their
data), and the diffs of the hT/cT tops are ignored (their data is shared, not their
diff); without `expose_hidden` each call starts from the h_T (c_T) the previous call
ended with (zeros at first, as after `reset_state()`, Caffe's RecurrentLayer::Reset),
RecurrentLayer::Forward_cpu's copy, kept across a change of N as Caffe's blob keeps it
(the first N * H values of its capacity).  Unlike Caffe, T may change between calls (Caffe
fixes it at set-up); `debug_info` (logging of the unrolled net) has no effect.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import NetDefinitionError, ShapeError
from ...ops import recurrent as R
from ...proto import caffe_pb2
from ..registry import CaffeModule, Call, LayerView, Shape, register


class _Recurrent(CaffeModule):
    """Blobs and carried state shared by the LSTM and RNN modules."""

    # the names of the state buffers, one per recurrent blob (h_T, and c_T for LSTM)
    _states: tuple[str, ...] = ()

    def __init__(self, shapes: list[tuple[str, Shape, caffe_pb2.FillerParameter | None]],
                 num_output: int, streams: int) -> None:
        super().__init__()
        blobs = []
        for name, shape, filler in shapes:
            setattr(self, name, nn.Parameter(torch.empty(shape)))
            blobs.append(name)
            self.fillers.append(filler)
        self.caffe_blobs = tuple(blobs)
        self.num_output = num_output
        for name in self._states:
            # Caffe's recurrent output blob, flat: its first N * H values are the state
            # of the N streams (Blob::Reshape keeps the data while the count fits).
            self.register_buffer(name, torch.zeros(streams * num_output), persistent=False)

    def to_empty(self, *, device, recurse: bool = True) -> _Recurrent:
        super().to_empty(device=device, recurse=recurse)
        self.reset_state()
        return self

    @torch.jit.unused
    def reset_state(self) -> None:
        """Zeros the carried hidden state (RecurrentLayer::Reset)."""
        with torch.no_grad():
            for name in self._states:
                getattr(self, name).zero_()

    @torch.jit.unused
    def carry_state_from(self, other: _Recurrent) -> None:
        """Takes over `other`'s carried state (the pycaffe facade, when a reshape switches
        to another GraphModule of the same net: Caffe's layer keeps its blobs)."""
        for name in self._states:
            self._buffers[name] = other._buffers[name]

    def extra_repr(self) -> str:
        shapes = [f"{b}={list(getattr(self, b).shape)}" for b in self.caffe_blobs]
        return ", ".join(shapes + [f"num_output={self.num_output}"])


def _read_state(state: Tensor, n: int, hidden: int) -> Tensor:
    """h_0 := h_T of the previous call: the first n streams Caffe's blob still holds,
    zeros when it had to grow (a new SyncedMemory is zero-filled)."""
    count = n * hidden
    if count <= state.shape[0]:
        # a copy: backward may need it after the buffer takes this call's h_T
        return state[:count].reshape(1, n, hidden).clone()
    return torch.zeros(1, n, hidden, dtype=state.dtype, device=state.device)


def _stored_state(state: Tensor, value: Tensor) -> Tensor:
    """The state buffer after writing `value` (h_T) into its first values."""
    flat = value.detach().reshape(-1)
    if flat.shape[0] > state.shape[0]:
        return flat.clone()
    with torch.no_grad():
        state[:flat.shape[0]].copy_(flat)
    return state


def _static_term(x_static: Tensor | None, weight: Tensor | None, width: int
                 ) -> Tensor | None:
    """W * x_static as one timestep (1, N, width): InnerProduct axis 1, then Reshape."""
    if x_static is None or weight is None:
        return None
    return F.linear(x_static.reshape(x_static.shape[0], -1), weight).reshape(1, -1, width)


class LSTM(_Recurrent):
    """Caffe's LSTM unrolled over T; this class: bottoms (x, cont), top h."""

    _states = ("h_T", "c_T")

    def __init__(self, num_output: int, input_dim: int, static_dim: int | None,
                 streams: int, weight_filler, bias_filler) -> None:
        gates = 4 * num_output
        shapes = [("W_xc", (gates, input_dim), weight_filler), ("b_c", (gates,), bias_filler)]
        if static_dim is not None:
            shapes.append(("W_xc_static", (gates, static_dim), weight_filler))
        shapes.append(("W_hc", (gates, num_output), weight_filler))
        super().__init__(shapes, num_output, streams)
        if static_dim is None:
            self.register_parameter("W_xc_static", None)

    def _unroll(self, x: Tensor, cont: Tensor, x_static: Tensor | None, h: Tensor,
                c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (T, N, H), h_T, c_T from h_0, c_0: lstm_layer.cpp's unrolled net."""
        steps, n = x.shape[0], x.shape[1]
        cont = cont.detach()
        gates_x = F.linear(x.reshape(steps, n, -1), self.W_xc, self.b_c)  # W_xc_x
        static = _static_term(x_static, self.W_xc_static, gates_x.shape[2])
        hs: list[Tensor] = []
        for t in range(steps):
            cont_t = cont[t:t + 1]
            h_conted = h * cont_t.unsqueeze(-1)
            # Eltwise SUM in Caffe's bottom order: W_hc_h_{t-1} + W_xc_x_t (+ static)
            gate = F.linear(h_conted, self.W_hc) + gates_x[t:t + 1]
            if static is not None:
                gate = gate + static
            c, h = R.lstm_unit(c, gate, cont_t)
            hs.append(h)
        return torch.cat(hs, 0), h, c

    def _carried(self, x: Tensor, cont: Tensor, x_static: Tensor | None) -> Tensor:
        n = x.shape[1]
        h0 = _read_state(self.h_T, n, self.num_output)
        c0 = _read_state(self.c_T, n, self.num_output)
        h, h_t, c_t = self._unroll(x, cont, x_static, h0, c0)
        self.h_T = _stored_state(self.h_T, h_t)
        self.c_T = _stored_state(self.c_T, c_t)
        return h

    def forward(self, x: Tensor, cont: Tensor) -> Tensor:
        return self._carried(x, cont, None)


class LSTMStatic(LSTM):
    """LSTM with a static input: bottoms (x, cont, x_static), top h."""

    def forward(self, x: Tensor, cont: Tensor, x_static: Tensor) -> Tensor:
        return self._carried(x, cont, x_static)


class LSTMExposed(LSTM):
    """LSTM with expose_hidden: bottoms (x, cont, h0, c0), tops (h, hT, cT)."""

    _states = ()

    def forward(self, x: Tensor, cont: Tensor, h0: Tensor, c0: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        h, h_t, c_t = self._unroll(x, cont, None, h0.detach(), c0.detach())
        return h, h_t.detach(), c_t.detach()


class LSTMStaticExposed(LSTM):
    """LSTM with both: bottoms (x, cont, x_static, h0, c0), tops (h, hT, cT)."""

    _states = ()

    def forward(self, x: Tensor, cont: Tensor, x_static: Tensor, h0: Tensor, c0: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        h, h_t, c_t = self._unroll(x, cont, x_static, h0.detach(), c0.detach())
        return h, h_t.detach(), c_t.detach()


class RNN(_Recurrent):
    """Caffe's RNN unrolled over T; this class: bottoms (x, cont), top o."""

    _states = ("h_T",)

    def __init__(self, num_output: int, input_dim: int, static_dim: int | None,
                 streams: int, weight_filler, bias_filler) -> None:
        hidden = num_output
        shapes = [("W_xh", (hidden, input_dim), weight_filler), ("b_h", (hidden,), bias_filler)]
        if static_dim is not None:
            shapes.append(("W_xh_static", (hidden, static_dim), weight_filler))
        shapes += [("W_hh", (hidden, hidden), weight_filler),
                   ("W_ho", (hidden, hidden), weight_filler), ("b_o", (hidden,), bias_filler)]
        super().__init__(shapes, num_output, streams)
        if static_dim is None:
            self.register_parameter("W_xh_static", None)

    def _unroll(self, x: Tensor, cont: Tensor, x_static: Tensor | None, h: Tensor
                ) -> tuple[Tensor, Tensor]:
        """o (T, N, H) and h_T from h_0: rnn_layer.cpp's unrolled net."""
        steps, n = x.shape[0], x.shape[1]
        cont = cont.detach()
        pre_x = F.linear(x.reshape(steps, n, -1), self.W_xh, self.b_h)  # W_xh_x
        static = _static_term(x_static, self.W_xh_static, pre_x.shape[2])
        hs: list[Tensor] = []
        for t in range(steps):
            h_conted = h * cont[t:t + 1].unsqueeze(-1)
            # h_t = tanh(W_hh_h_{t-1} + W_xh_x_t (+ static)), TanH's backward 1 - h_t^2
            pre = F.linear(h_conted, self.W_hh) + pre_x[t:t + 1]
            if static is not None:
                pre = pre + static
            h = torch.tanh(pre)
            hs.append(h)
        # o_t = tanh(W_ho h_t + b_o), every step at once (the same per-row products)
        o = torch.tanh(F.linear(torch.cat(hs, 0), self.W_ho, self.b_o))
        return o, h

    def _carried(self, x: Tensor, cont: Tensor, x_static: Tensor | None) -> Tensor:
        h0 = _read_state(self.h_T, x.shape[1], self.num_output)
        o, h_t = self._unroll(x, cont, x_static, h0)
        self.h_T = _stored_state(self.h_T, h_t)
        return o

    def forward(self, x: Tensor, cont: Tensor) -> Tensor:
        return self._carried(x, cont, None)


class RNNStatic(RNN):
    """RNN with a static input: bottoms (x, cont, x_static), top o."""

    def forward(self, x: Tensor, cont: Tensor, x_static: Tensor) -> Tensor:
        return self._carried(x, cont, x_static)


class RNNExposed(RNN):
    """RNN with expose_hidden: bottoms (x, cont, h0), tops (o, hT)."""

    _states = ()

    def forward(self, x: Tensor, cont: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        o, h_t = self._unroll(x, cont, None, h0.detach())
        return o, h_t.detach()


class RNNStaticExposed(RNN):
    """RNN with both: bottoms (x, cont, x_static, h0), tops (o, hT)."""

    _states = ()

    def forward(self, x: Tensor, cont: Tensor, x_static: Tensor, h0: Tensor
                ) -> tuple[Tensor, Tensor]:
        o, h_t = self._unroll(x, cont, x_static, h0.detach())
        return o, h_t.detach()


_CLASSES = {
    ("LSTM", False, False): LSTM, ("LSTM", True, False): LSTMStatic,
    ("LSTM", False, True): LSTMExposed, ("LSTM", True, True): LSTMStaticExposed,
    ("RNN", False, False): RNN, ("RNN", True, False): RNNStatic,
    ("RNN", False, True): RNNExposed, ("RNN", True, True): RNNStaticExposed,
}


def _shape_error(view: LayerView, message: str) -> ShapeError:
    return view.error(message, ShapeError)  # type: ignore[return-value]


def _recurrent(view: LayerView, hidden_names: tuple[str, ...]) -> _Recurrent:
    """RecurrentLayer::LayerSetUp and Reshape's checks, then the module."""
    p = view.param.recurrent_param
    if p.num_output <= 0:
        raise view.fail("recurrent_param.num_output", p.num_output, "a positive count")
    expose = p.expose_hidden
    exposed = len(hidden_names) if expose else 0
    lo = 2 + exposed
    names = ["x", "cont", "[x_static]"] + list(hidden_names if expose else ())
    if not lo <= len(view.bottoms) <= lo + 1:
        raise NetDefinitionError(
            f"layer '{view.name}' ({view.type}) has {len(view.bottoms)} bottoms; allowed: "
            f"{lo} or {lo + 1} ({', '.join(names)}) with expose_hidden = {expose}")
    tops = 1 + exposed
    if len(view.tops) != tops:
        top_names = ["h" if view.type == "LSTM" else "o"] + \
            [f"{n}T" for n in ("h", "c")[:len(hidden_names)]] * bool(expose)
        raise NetDefinitionError(
            f"layer '{view.name}' ({view.type}) has {len(view.tops)} tops; allowed: exactly "
            f"{tops} ({', '.join(top_names)}) with expose_hidden = {expose}")
    static = len(view.bottoms) > lo
    shapes = view.input_shapes
    x, cont = shapes[0], shapes[1]
    if len(x) < 3:  # RecurrentLayer asks for 2; its InnerProduct on axis 2 for 3
        raise _shape_error(view, f"bottom[0] (x) has shape {list(x)}; it must have at least "
                                 "3 axes (#timesteps, #streams, features...)")
    steps, n = x[0], x[1]
    if len(cont) != 2 or tuple(cont) != (steps, n):
        raise _shape_error(view, f"bottom[1] (cont) has shape {list(cont)}; it must be "
                                 f"(#timesteps, #streams) = {[steps, n]}")
    static_dim = None
    if static:
        xs = shapes[2]
        if len(xs) < 2 or xs[0] != n:  # InnerProduct on axis 1
            raise _shape_error(view, f"bottom[2] (x_static) has shape {list(xs)}; it must "
                                     f"have at least 2 axes, the first the {n} streams")
        static_dim = 1
        for d in xs[1:]:
            static_dim *= d
    want = (1, n, p.num_output)
    for j, name in enumerate(hidden_names if expose else ()):
        got = shapes[2 + static + j]
        if tuple(got) != want:
            raise _shape_error(view, f"bottom[{2 + static + j}] ({name}) has shape {list(got)}; "
                                     f"it must be {list(want)} (1, #streams, num_output)")
    input_dim = 1
    for d in x[2:]:
        input_dim *= d
    cls = _CLASSES[(view.type, static, expose)]
    return cls(p.num_output, input_dim, static_dim, n, p.weight_filler, p.bias_filler)


@register("LSTM", params=("recurrent_param",), bottoms=(2, 5), tops=(1, 3))
def lstm(view: LayerView) -> _Recurrent:
    return _recurrent(view, ("h0", "c0"))


@register("RNN", params=("recurrent_param",), bottoms=(2, 4), tops=(1, 2))
def rnn(view: LayerView) -> _Recurrent:
    return _recurrent(view, ("h0",))


@register("LSTMUnit", bottoms=3, tops=2)
def lstm_unit(view: LayerView) -> Call:
    """LSTMUnit: bottoms c_prev (1, N, H), gate inputs (1, N, 4H), cont (1, N); tops c, h."""
    c_prev, x, cont = view.input_shapes
    if len(c_prev) != 3 or len(x) != 3 or len(cont) != 2:
        raise _shape_error(view, f"bottoms have shapes {[list(s) for s in view.input_shapes]}; "
                                 "allowed: c_prev (1, N, H), x (1, N, 4H), cont (1, N)")
    n, hidden = c_prev[1], c_prev[2]
    if any(s[0] != 1 or s[1] != n for s in view.input_shapes) or x[2] != 4 * hidden:
        raise _shape_error(view, f"bottoms have shapes {[list(s) for s in view.input_shapes]}; "
                                 f"allowed: c_prev (1, N, H), x (1, N, 4H), cont (1, N) with "
                                 f"N = {n}, H = {hidden}")
    return Call(R.lstm_unit)
