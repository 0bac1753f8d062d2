"""Hook handles and the machinery behind Module.register_full_backward_hook."""

from __future__ import annotations

import itertools
from collections import OrderedDict

from ...autograd.grad_mode import is_grad_enabled
from ...dispatch import attach_custom
from ...guards import module_state_changed
from ...tensor import Tensor


class RemovableHandle:
    """What register_*_hook returns: `remove()` takes the hook out of its registry."""

    _next_id = itertools.count()

    def __init__(self, hooks_dict: dict, *, extra_dict: dict | None = None):
        self.hooks_dict = hooks_dict
        self.extra_dict = extra_dict
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        module_state_changed()  # compiled forwards guard on the hooks they ran
        for d in (self.hooks_dict, self.extra_dict):
            if d is not None and self.id in d:
                del d[self.id]

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def add_hook(hooks: OrderedDict, hook, prepend: bool = False, extra_dict: dict | None = None) -> RemovableHandle:
    module_state_changed()
    handle = RemovableHandle(hooks, extra_dict=extra_dict)
    hooks[handle.id] = hook
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


class BackwardHook:
    """Full backward hooks of one module call.

    The call's tensor inputs and outputs pass through identity autograd nodes: the output nodes
    see grad_output, the input nodes see grad_input, and the input side calls the user's hooks
    (which may replace grad_input). graphtorch's autograd nodes have one output each, so with
    several tensor inputs a replacement returned by a hook reaches only the input whose gradient
    arrives last; with one tensor input (the usual case) it is exact.
    """

    def __init__(self, module, hooks: list, pre_hooks: list):
        self.module, self.hooks, self.pre_hooks = module, hooks, pre_hooks
        self.grad_inputs: list = []
        self.grad_outputs: list = []
        self.n_inputs = 0
        self.inputs_waiting = 0
        self.outputs_waiting = 0
        self.called = False

    def setup_input_hook(self, args: tuple) -> tuple:
        self.n_inputs = sum(isinstance(a, Tensor) for a in args)
        self.grad_inputs = [None] * self.n_inputs
        out, k = [], 0
        for a in args:
            if isinstance(a, Tensor):
                if a.requires_grad and is_grad_enabled():
                    a = self._identity(a, self._input_vjp(k))
                    self.inputs_waiting += 1
                k += 1
            out.append(a)
        return tuple(out)

    def setup_output_hook(self, result):
        outs = result if isinstance(result, tuple) else (result,)
        self.grad_outputs = [None] * len(outs)
        wrapped = []
        for i, o in enumerate(outs):
            if isinstance(o, Tensor) and o.requires_grad and is_grad_enabled():
                o = self._identity(o, self._output_vjp(i))
                self.outputs_waiting += 1
            wrapped.append(o)
        return tuple(wrapped) if isinstance(result, tuple) else wrapped[0]

    @staticmethod
    def _identity(t: Tensor, vjp) -> Tensor:
        out = t.detach()
        attach_custom(out, "BackwardHookFunctionBackward", vjp, [], [t])
        return out

    def _output_vjp(self, i: int):
        def vjp(grad, _saved):
            self.grad_outputs[i] = grad
            self.outputs_waiting -= 1
            if self.outputs_waiting == 0:
                self._run_pre_hooks()
                if self.inputs_waiting == 0:  # no input needs grad: torch calls the hooks with Nones
                    self._run_hooks()
            return [self.grad_outputs[i]]
        return vjp

    def _input_vjp(self, k: int):
        def vjp(grad, _saved):
            self.grad_inputs[k] = grad
            self.inputs_waiting -= 1
            if self.inputs_waiting == 0:
                self._run_hooks()
            return [self.grad_inputs[k]]
        return vjp

    def _run_pre_hooks(self) -> None:
        for hook in self.pre_hooks:
            new = hook(self.module, tuple(self.grad_outputs))
            if new is not None:
                self.grad_outputs = list(new if isinstance(new, tuple) else (new,))

    def _run_hooks(self) -> None:
        if self.called:
            return
        self.called = True
        for hook in self.hooks:
            new = hook(self.module, tuple(self.grad_inputs), tuple(self.grad_outputs))
            if new is not None:
                new = new if isinstance(new, tuple) else (new,)
                if len(new) != self.n_inputs:
                    raise RuntimeError(f"Backward hook returned an invalid number of grad_input, got {len(new)}, "
                                       f"but expected {self.n_inputs}")
                self.grad_inputs = list(new)
