"""RNN, LSTM, GRU and their Cell variants, with torch's parameter names, init, reprs and checks."""

from __future__ import annotations

import math
import numbers
import warnings

from ...ops.creation import empty, zeros
from ...ops.shape import cat, stack
from ...tensor import Tensor
from .. import functional as F
from .. import init
from .._rnn import STEPS, run_direction
from ..parameter import Parameter
from ..utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from .module import Module

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _check_type(name: str, value, kind: type) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")


def _check_dropout(dropout, num_layers: int) -> None:
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                         "being zeroed")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                      f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                      stacklevel=4)


def _check_sizes(input_size: int, hidden_size: int, num_layers: int, proj_size: int) -> None:
    _check_type("input_size", input_size, int)
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    _check_type("hidden_size", hidden_size, int)
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


class RNNBase(Module):
    """The shared body: parameters weight_ih_l{k}[_reverse] etc., and the layer/direction loop."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None) -> None:
        super().__init__()
        _check_dropout(dropout, num_layers)
        _check_type("bias", bias, bool)
        _check_type("batch_first", batch_first, bool)
        _check_sizes(input_size, hidden_size, num_layers, proj_size)
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            for suffix in ("", "_reverse") if bidirectional else ("",):
                self._make_layer(layer, suffix, {"device": device, "dtype": dtype})
        self.reset_parameters()

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _out_size(self) -> int:
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def _make_layer(self, layer: int, suffix: str, factory: dict) -> None:
        gates = _GATES[self.mode] * self.hidden_size
        in_size = self.input_size if layer == 0 else self._out_size * self._directions
        shapes = {"weight_ih": (gates, in_size), "weight_hh": (gates, self._out_size)}
        if self.bias:
            shapes.update(bias_ih=(gates,), bias_hh=(gates,))
        if self.proj_size > 0:
            shapes["weight_hr"] = (self.proj_size, self.hidden_size)
        for kind, shape in shapes.items():
            name = f"{kind}_l{layer}{suffix}"
            setattr(self, name, Parameter(empty(shape, **factory)))
            self._flat_weights_names.append(name)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """torch packs the weights for cuDNN here; graphtorch has nothing to pack."""

    @property
    def all_weights(self) -> list[list[Parameter]]:
        per = len(self._flat_weights_names) // (self.num_layers * self._directions)
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i:i + per]] for i in range(0, len(names), per)]

    def _weights(self, layer: int, suffix: str) -> dict:
        """One layer-direction's parameters under _rnn's names (None where absent: no bias, no projection)."""
        kinds = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh", "w_hr": "weight_hr"}
        return {key: getattr(self, f"{kind}_l{layer}{suffix}", None) for key, kind in kinds.items()}

    def _check_input(self, input: Tensor) -> None:
        weight_dtype = self.weight_ih_l0.dtype
        if input.dtype != weight_dtype:
            raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight_dtype}). Convert "
                             f"input: input.to({weight_dtype}), or convert model: model.to({input.dtype})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                               f"{input.shape[-1]}")

    def _expected_hidden(self, batch: int, size: int) -> tuple:
        return self.num_layers * self._directions, batch, size

    def _check_hidden(self, hx: Tensor, expected: tuple, what: str = "hidden size") -> None:
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"Expected {what} {expected}, got {list(hx.shape)}")

    def _layers(self, x: Tensor, states: list, lengths=None) -> tuple[Tensor, list]:
        """All layers over time-major x; states[i] is layer-direction i's initial state."""
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(("", "_reverse")[:self._directions]):
                out, final = run_direction(self.mode, x, states[layer * self._directions + d],
                                           self._weights(layer, suffix), reverse=d == 1, lengths=lengths)
                outs.append(out)
                finals.append(final)
            x = outs[0] if len(outs) == 1 else cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        return x, finals

    def _time_major(self, input) -> tuple[Tensor, bool, object]:
        """(T, B, F) input, whether it was batched, and the sequence lengths (packed input) or None."""
        if isinstance(input, PackedSequence):
            padded, lengths = pad_packed_sequence(input)
            return padded, True, lengths.numpy()
        batched = self._check_rank(input)
        if not batched:
            return input.unsqueeze(1), False, None
        return (input.transpose(0, 1) if self.batch_first else input), True, None

    def _from_time_major(self, out: Tensor, input, batched: bool):
        if isinstance(input, PackedSequence):  # packed in, packed out, in the same order
            return pack_padded_sequence(out, input.lengths(), enforce_sorted=input.sorted_indices is None)
        if not batched:
            return out.squeeze(1)
        return out.transpose(0, 1) if self.batch_first else out

    def _check_rank(self, input: Tensor) -> bool:
        if input.ndim not in (2, 3):
            name = "RNN" if self.mode.startswith("RNN") else self.mode
            tail = "tensor instead" if name == "RNN" else "instead"
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D {tail}")
        return input.ndim == 3

    def _initial(self, hx: Tensor | None, batched: bool, batch: int, dtype, size: int) -> Tensor:
        if hx is None:
            return zeros(*self._expected_hidden(batch, size), dtype=dtype)
        return hx if batched else hx.unsqueeze(1)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class _SingleStateRNN(RNNBase):
    """RNN and GRU: one hidden state per layer and direction."""

    def forward(self, input, hx: Tensor | None = None) -> tuple:
        x, batched, lengths = self._time_major(input)
        if hx is not None and hx.ndim != x.ndim - (not batched):
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(f"For {kind} input, hx should also be {3 if batched else 2}-D but got {hx.ndim}-D "
                               "tensor")
        self._check_input(x)
        h0 = self._initial(hx, batched, x.shape[1], x.dtype, self.hidden_size)
        self._check_hidden(h0, self._expected_hidden(x.shape[1], self.hidden_size))
        out, finals = self._layers(x, list(h0.unbind(0)), lengths)
        h_n = stack(finals)
        return self._from_time_major(out, input, batched), h_n if batched else h_n.squeeze(1)


class RNN(_SingleStateRNN):
    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", *args, **kwargs)


class GRU(_SingleStateRNN):
    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


class LSTM(RNNBase):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def forward(self, input, hx: tuple[Tensor, Tensor] | None = None) -> tuple:
        x, batched, lengths = self._time_major(input)
        rank = 3 if batched else 2
        if hx is not None and (hx[0].ndim != rank or hx[1].ndim != rank):
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(f"For {kind} input, hx and cx should also be {rank}-D but got "
                               f"({hx[0].ndim}-D, {hx[1].ndim}-D) tensors")
        self._check_input(x)
        batch = x.shape[1]
        h0 = self._initial(None if hx is None else hx[0], batched, batch, x.dtype, self._out_size)
        c0 = self._initial(None if hx is None else hx[1], batched, batch, x.dtype, self.hidden_size)
        self._check_hidden(h0, self._expected_hidden(batch, self._out_size), "hidden[0] size")
        self._check_hidden(c0, self._expected_hidden(batch, self.hidden_size), "hidden[1] size")
        out, finals = self._layers(x, list(zip(h0.unbind(0), c0.unbind(0))), lengths)
        h_n, c_n = stack([h for h, _ in finals]), stack([c for _, c in finals])
        if not batched:
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return self._from_time_major(out, input, batched), (h_n, c_n)


# ---------------------------------------------------------------- cells


class RNNCellBase(Module):
    _name = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = Parameter(empty((num_chunks * hidden_size, input_size), **factory))
        self.weight_hh = Parameter(empty((num_chunks * hidden_size, hidden_size), **factory))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, **factory))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _batched(self, input: Tensor, states: tuple) -> bool:
        if input.ndim not in (1, 2):
            raise ValueError(f"{self._name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        for what, h in states:
            if h is not None and h.ndim not in (1, 2):
                raise ValueError(f"{self._name}: Expected {what} to be 1D or 2D, got {h.ndim}D instead")
        return input.ndim == 2

    def _step(self, mode: str, input: Tensor, state):
        x_gates = F.linear(input, self.weight_ih, self.bias_ih)
        return STEPS[mode](x_gates, state, self.weight_hh, self.bias_hh)

    def _state(self, h: Tensor | None, input: Tensor, batched: bool) -> Tensor:
        if h is None:
            return zeros(input.shape[0], self.hidden_size, dtype=input.dtype)
        return h if batched else h.unsqueeze(0)


class RNNCell(RNNCellBase):
    _name = "RNNCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        batched = self._batched(input, (("hidden", hx),))
        x = input if batched else input.unsqueeze(0)
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        h = self._step("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", x, self._state(hx, x, batched))
        return h if batched else h.squeeze(0)


class GRUCell(RNNCellBase):
    _name = "GRUCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        batched = self._batched(input, (("hidden", hx),))
        x = input if batched else input.unsqueeze(0)
        h = self._step("GRU", x, self._state(hx, x, batched))
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    _name = "LSTMCell"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        states = (("hx[0]", None), ("hx[1]", None)) if hx is None else (("hx[0]", hx[0]), ("hx[1]", hx[1]))
        batched = self._batched(input, states)
        x = input if batched else input.unsqueeze(0)
        h, c = self._step("LSTM", x, (self._state(states[0][1], x, batched), self._state(states[1][1], x, batched)))
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))
