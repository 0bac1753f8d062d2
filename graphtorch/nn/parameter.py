"""nn.Parameter: a Tensor that a Module registers as a learnable weight."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that shares `data`'s memory and requires grad (torch.nn.Parameter)."""

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            data = Tensor._wrap(np.empty((0,), np.float32))
        # share memory and version counter with `data`, as torch's _make_subclass does
        self._data, self._dtype, self._node = data._data, data._dtype, data._node
        self._version = data._version
        self._requires_grad, self._grad, self._hooks = False, None, []
        self.requires_grad = requires_grad

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (np.array(self._data), self.requires_grad))


def _rebuild_parameter(data: np.ndarray, requires_grad: bool) -> Parameter:
    return Parameter(Tensor._wrap(data), requires_grad)
