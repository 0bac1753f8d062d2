"""One time step of each recurrent cell, and a layer's loop over time.

The input's contribution to the gates (x W_ih^T + b_ih) is computed for every step at once by the
caller (one large matmul instead of T small ones); each step adds h W_hh^T + b_hh and applies the
cell. Traced, the loop unrolls into T copies of the step, which the compiler fuses per step.
Gate order follows torch: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ops.creation import tensor
from ..ops.elementwise import relu, sigmoid, tanh, where
from ..ops.shape import stack
from ..tensor import Tensor


def _hidden_gates(h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    from .functional import linear

    return linear(h, w_hh, b_hh)


def rnn_tanh_step(x_gates: Tensor, state: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    return tanh(x_gates + _hidden_gates(state, w_hh, b_hh))


def rnn_relu_step(x_gates: Tensor, state: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    return relu(x_gates + _hidden_gates(state, w_hh, b_hh))


def gru_step(x_gates: Tensor, state: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    x_r, x_z, x_n = x_gates.chunk(3, -1)
    h_r, h_z, h_n = _hidden_gates(state, w_hh, b_hh).chunk(3, -1)
    reset, update = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
    candidate = tanh(x_n + reset * h_n)
    return candidate + update * (state - candidate)  # (1 - z) n + z h


def lstm_step(x_gates: Tensor, state: tuple, w_hh: Tensor, b_hh: Tensor | None,
              w_hr: Tensor | None = None) -> tuple[Tensor, Tensor]:
    h, c = state
    i, f, g, o = (x_gates + _hidden_gates(h, w_hh, b_hh)).chunk(4, -1)
    c = sigmoid(f) * c + sigmoid(i) * tanh(g)
    h = sigmoid(o) * tanh(c)
    if w_hr is not None:
        h = h.matmul(w_hr.t())
    return h, c


STEPS: dict[str, Callable] = {"RNN_TANH": rnn_tanh_step, "RNN_RELU": rnn_relu_step, "GRU": gru_step,
                              "LSTM": lstm_step}


def run_direction(mode: str, x: Tensor, state, weights: dict, reverse: bool,
                  lengths: np.ndarray | None = None) -> tuple:
    """One layer, one direction over a time-major (T, B, F) input: (outputs (T, B, H), final state).
    With `lengths` (variable-length sequences) a sequence's state stops changing past its end, and
    in reverse starts changing only at its last step, as torch's packed sequences behave."""
    from .functional import linear

    step = STEPS[mode]
    extra = (weights["w_hr"],) if mode == "LSTM" and weights.get("w_hr") is not None else ()
    x_gates = linear(x, weights["w_ih"], weights.get("b_ih")).unbind(0)
    order = range(len(x_gates) - 1, -1, -1) if reverse else range(len(x_gates))
    outputs = [None] * len(x_gates)
    for t in order:
        new = step(x_gates[t], state, weights["w_hh"], weights.get("b_hh"), *extra)
        state = new if lengths is None else _keep_finished(new, state, tensor((t < lengths)[:, None]))
        outputs[t] = state[0] if mode == "LSTM" else state
    return stack(outputs), state


def _keep_finished(new, old, running: Tensor):
    """The new state where a sequence is still running, the old one where it has ended."""
    if isinstance(new, tuple):
        return tuple(where(running, n, o) for n, o in zip(new, old))
    return where(running, new, old)
