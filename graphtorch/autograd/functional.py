"""torch.autograd.backward and torch.autograd.grad."""

from __future__ import annotations

from .graph import run_backward


def _seed_grads(tensors, grads):
    from ..ops.creation import ones_like
    from ..ops.elementwise import constant

    out = []
    for i, t in enumerate(tensors):
        g = None if grads is None else grads[i]
        if not t.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if t.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = ones_like(t) if t.is_cuda else constant(1, t.dtype, t.shape)  # a CPU one: no creation op
        else:
            if tuple(g.shape) != tuple(t.shape):
                raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] "
                                   f"has a shape of {t.shape}.")
            if g.dtype is not t.dtype:
                g = g.to(t.dtype)
        out.append(g)
    return out


def _as_list(x):
    if x is None:
        return None
    return [x] if hasattr(x, "_data") else list(x)


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None, create_graph: bool = False,
             inputs=None) -> None:
    tensors = _as_list(tensors)
    grads = _seed_grads(tensors, _as_list(grad_tensors))
    retain = create_graph if retain_graph is None else retain_graph
    leaves = _as_list(inputs)
    if leaves is None:
        run_backward(tensors, grads, retain_graph=retain, create_graph=create_graph)
        return
    captured = run_backward(tensors, grads, retain_graph=retain, create_graph=create_graph, inputs=leaves)
    for t, g in zip(leaves, captured):
        if g is not None:
            t.grad = g.detach() if t.grad is None else t.grad + g.detach()


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool | None = None, materialize_grads: bool = False) -> tuple:
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    if not all(t.requires_grad for t in inputs):
        raise RuntimeError("One of the differentiated Tensors does not require grad")
    grads = _seed_grads(outputs, _as_list(grad_outputs))
    retain = create_graph if retain_graph is None else retain_graph
    captured = run_backward(outputs, grads, retain_graph=retain, create_graph=create_graph, inputs=inputs)
    result = []
    for i, (t, g) in enumerate(zip(inputs, captured)):
        if g is None and materialize_grads:
            from ..ops.creation import zeros_like

            g = zeros_like(t)
        elif g is None and not allow_unused:
            raise RuntimeError(f"The differentiated Tensor at index {i} appears to not have been used in the graph. "
                               "Set allow_unused=True if this is the desired behavior.")
        result.append(g)
    return tuple(result)


