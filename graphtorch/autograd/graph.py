"""The backward graph and the engine that runs it (micrograd's idea, with PyTorch's names).

Every differentiable op output gets a Node (its `grad_fn`). A Node knows how to turn the
gradient of its output into gradients of its inputs (a VJP), and where those go
(`next_functions`: the inputs' grad_fns, or AccumulateGrad for leaves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .grad_mode import is_grad_enabled, set_grad_enabled

_FREED = ("Trying to backward through the graph a second time (or directly access saved tensors after they "
          "have already been freed). Saved intermediate values of the graph are freed when you call "
          ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the graph "
          "a second time or if you need to access saved tensors after calling backward.")


running: Node | None = None  # the node whose VJP is executing (the tracer labels its nodes with it)


class Node:
    """A backward function. `vjp(grad, saved)` returns one gradient (or None) per input."""

    created = 0  # a serial number per node, so an op can tell the nodes it made

    def __new__(cls, name: str, *args):
        # PyTorch's grad_fn objects are instances of classes named like `MulBackward0`
        if cls is Node:
            cls = _node_class(name)
        return object.__new__(cls)

    def __init__(self, name: str, vjp: Callable, saved: Sequence, next_functions: tuple):
        self.serial = Node.created
        Node.created += 1
        self._vjp = vjp
        self._saved = [(t, t._version[0]) if t is not None else None for t in saved]
        self._freed = False
        self.next_functions = next_functions  # ((Node | None, 0), ...), as in PyTorch
        self._pre_hooks: list[Callable] = []  # tensor hooks of this node's output
        self.metadata: dict = {}

    def name(self) -> str:
        return type(self).__name__

    def rename(self, name: str) -> None:
        self.__class__ = _node_class(name)

    def register_prehook(self, fn: Callable) -> None:
        self._pre_hooks.append(fn)

    def _unpack_saved(self) -> list:
        if self._freed:
            raise RuntimeError(_FREED)
        out = []
        for entry in self._saved:
            if entry is None:
                out.append(None)
                continue
            t, version = entry
            if t._version[0] != version:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{t.type()} {list(t.shape)}], which is output 0 of {self.name()}, is at version "
                    f"{t._version[0]}; expected version {version} instead. Hint: the backtrace further above can "
                    "point to the operation that failed to compute its gradient.")
            out.append(t)
        return out

    def apply(self, grad):
        return self._vjp(grad, self._unpack_saved())

    def release(self) -> None:
        self._saved = []
        self._freed = True

    def __call__(self, grad):
        return self.apply(grad)

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self))}>"


def keep_originals(root: Node | None, since: int, tensor) -> None:
    """Before `tensor` is overwritten in place: nodes made since serial `since` (by the op being
    applied in place) that saved `tensor` or a view of it keep a copy of its current values
    instead (PyTorch's "original self"), so `x.mul_(2)` stays differentiable."""
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or node.serial < since:
            continue
        seen.add(id(node))
        for k, entry in enumerate(node._saved):
            if entry is not None and entry[0]._version is tensor._version and entry[0]._data is not None:
                copy = type(entry[0])._wrap(entry[0]._data.copy())
                node._saved[k] = (copy, copy._version[0])
        stack.extend(nxt for nxt, _ in node.next_functions)


_classes: dict[str, type] = {}


def _node_class(name: str) -> type:
    if name not in _classes:
        _classes[name] = type(name, (Node,), {})
    return _classes[name]


class AccumulateGrad(Node):
    """The sink for a leaf tensor: adds the incoming gradient into `variable.grad`."""

    def __init__(self, variable):
        super().__init__("AccumulateGrad", None, (), ())
        self.variable = variable
        self.post_hooks: list[Callable] = []  # hook(variable) once .grad holds the sum (DDP's trigger)

    def apply(self, grad):
        v = self.variable
        if v._grad is None:  # a leaf: its .grad getter has nothing to warn about
            v.grad = grad if is_grad_enabled() else grad.detach()._owned()
        elif is_grad_enabled():  # create_graph: keep the history of the sum
            v.grad = v.grad + grad
        else:
            v.grad.add_(grad)  # in place, like PyTorch: the .grad object stays the same
        for hook in self.post_hooks:
            hook(v)
        return ()

    def release(self) -> None:
        pass


def _topo_order(roots: list[Node]) -> list[Node]:
    # nodes are dict keys by identity (Node defines no __eq__): cheaper than id() per visit
    order, seen = [], set()
    stack = [(r, False) for r in roots]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for nxt, _ in node.next_functions:
            if nxt is not None and nxt not in seen:
                stack.append((nxt, False))
    return order[::-1]  # outputs first


def run_backward(roots: Sequence, grads: Sequence, *, retain_graph: bool, create_graph: bool,
                 inputs: Sequence | None = None) -> list | None:
    """Propagate `grads` from `roots` (tensors) to the leaves, or only to `inputs` (autograd.grad)."""
    from ..dispatch import quiet_floating_point

    nodes = [r.grad_fn for r in roots]
    pending: dict[Node, object] = {}
    for node, g in zip(nodes, grads):
        pending[node] = g if node not in pending else pending[node] + g
    capture = {t.grad_fn if t.grad_fn is not None else t._accumulator(): i for i, t in enumerate(inputs or [])}
    captured: list = [None] * len(inputs or [])
    with set_grad_enabled(create_graph), quiet_floating_point():
        for node in _topo_order([n for n in nodes if n is not None]):
            grad = pending.pop(node, None)
            if grad is None:
                continue
            for hook in node._pre_hooks:
                new = hook(grad)
                grad = new if new is not None else grad
            if inputs is not None:
                if node in capture:
                    captured[capture[node]] = grad
                    if isinstance(node, AccumulateGrad):
                        continue
                if isinstance(node, AccumulateGrad):  # autograd.grad: leaves' .grad stay as they are
                    continue
            for nxt, g in _propagate(node, grad, retain_graph):
                prev = pending.get(nxt)
                pending[nxt] = g if prev is None else prev + g
    return captured if inputs is not None else None


def _propagate(node: Node, grad, retain_graph: bool):
    """Run `node`'s VJP on `grad`; the (next node, gradient) pairs that carry a gradient."""
    global running
    running = node
    try:
        in_grads = node.apply(grad)
    finally:
        running = None
    if not retain_graph:
        node.release()
    return [(nxt, g) for (nxt, _), g in zip(node.next_functions, in_grads) if nxt is not None and g is not None]
