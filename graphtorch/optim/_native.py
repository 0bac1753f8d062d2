"""optimizer.step() as one native call: the multi-tensor update, compiled once per signature.

The update loop of the chosen param groups (the same `_update` code the numpy path runs) is
compiled with graphtorch.compile: the gradients are its arguments, and the parameters, the
optimizer state and the hyperparameter scalars (hyperparameters.py) are lifted tensors the
kernels update in place. One call then updates every parameter of those groups, where the
numpy path dispatches a dozen small ops per parameter. A scheduler changes only scalars, so
it never recompiles; a new set of gradients or new state tensors (load_state_dict) retrace.

This is torch's foreach/fused multi-tensor path: a group with foreach=False keeps the numpy
loop (for debugging), and so do parameters the CPU kernels do not take (CUDA, half precision).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .. import dispatch
from .. import dtypes as dt
from ..tensor import Tensor

if TYPE_CHECKING:
    from .optimizer import Optimizer

_NATIVE_DTYPES = (dt.float32, dt.float64)


def wants_native(group: dict[str, Any]) -> bool:
    """foreach=False asks for the per-parameter numpy loop; otherwise the group steps natively
    when every parameter is a CPU float32/float64 tensor."""
    if group.get("foreach") is False and not group.get("fused"):
        return False
    return all(not p.is_cuda and p.dtype in _NATIVE_DTYPES for p in group["params"])


class NativeStep:
    """The compiled update of the param groups at `indices` of `optimizer`."""

    def __init__(self, optimizer: Optimizer, indices: tuple[int, ...]) -> None:
        from ..compiled import CompiledFunction  # compiled imports the tracer and the compiler: load on use

        self.optimizer = optimizer
        self.indices = indices
        name = f"{type(optimizer).__name__}.step"
        # dumps (GRAPHTORCH_DUMP_DIR) go to a folder of their own, not over the user's compiled step's
        dumps = os.environ.get("GRAPHTORCH_DUMP_DIR")
        # no eager first call: every step, the first included, runs the same kernels
        self.compiled = CompiledFunction(self._update, name=name, warm_up=False,
                                         dump_dir=os.path.join(dumps, name) if dumps else None)

    def __call__(self) -> None:
        self.compiled(self._grads())

    def _params(self) -> list[Tensor]:
        groups = self.optimizer.param_groups
        return [p for i in self.indices for p in groups[i]["params"]]

    def _grads(self) -> list[Tensor]:
        return [p.grad for p in self._params() if p.grad is not None]

    def _which_have_grads(self) -> tuple[bool, ...]:
        return tuple(p.grad is not None for p in self._params())

    def _update(self, grads: list[Tensor]) -> tuple:
        if dispatch._tracer is not None:  # the gradients are matched to parameters by position
            dispatch._tracer.add_guard("parameters with gradients", self._which_have_grads)
        self.optimizer._update_groups(self.indices, grads)
        return ()
