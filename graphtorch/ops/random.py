"""Random numbers from a counter-based generator of our own.

`rand` is a primitive: splitmix64(key + i) for element i. A Generator hands out keys and
advances its offset by the number of values drawn, so the same seed gives the same stream in
eager mode, in the interpreter and in compiled code (the key becomes a graph input there).
It need not match PyTorch's stream.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from ..compiler.primitives import splitmix64
from ..cuda_tensor import on_device
from ..dispatch import apply
from ..tensor import Tensor, check_device
from .creation import _size


class Generator:
    def __init__(self, device="cpu"):
        self._seed = 67280421310721
        self._offset = 0

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self._offset = 0
        return self

    def seed(self) -> int:
        import os

        return self.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)._seed

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> Tensor:
        return Tensor._wrap(np.array([self._seed, self._offset], dtype=np.uint64).view(np.int64))

    def set_state(self, state: Tensor) -> Generator:
        self._seed, self._offset = (int(v) for v in state._data.view(np.uint64))
        return self

    def next_key(self, n: int) -> Tensor:
        """An int64 key for `n` fresh values (a graph input when tracing)."""
        from ..dispatch import _tracer

        base = int(splitmix64(np.array(self._seed, np.uint64))) + self._offset
        self._offset += n
        if _tracer is not None:
            return _tracer.rng_key(self, base)
        return Tensor._wrap(np.array(base & 0xFFFFFFFFFFFFFFFF, np.uint64).view(np.int64))


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    return default_generator.get_state()


def set_rng_state(state: Tensor) -> None:
    default_generator.set_state(state)


def _uniform(shape, dtype, generator) -> Tensor:
    g = generator or default_generator
    return apply("rand", g.next_key(math.prod(shape)), shape=tuple(shape), dtype=dtype)


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        t = t.detach()
        t.requires_grad = True
    return t


@on_device
def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    dtype = dtype or dt.get_default_dtype()
    if not dtype.is_floating_point:
        raise RuntimeError(f'"check_uniform_bounds" not implemented for \'{dtype.name}\'')
    return _finish(_uniform(_size(size), dtype, generator), requires_grad)


@on_device
def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    return _finish(normal_sample(_size(size), dtype or dt.get_default_dtype(), generator), requires_grad)


def normal_sample(shape, dtype, generator=None) -> Tensor:
    """Box-Muller from two uniform draws, written with ops so it traces and compiles."""
    from .elementwise import cos, log, mul, neg, rsub, sqrt

    u1 = _uniform(shape, dtype, generator)
    u2 = _uniform(shape, dtype, generator)
    radius = sqrt(mul(neg(log(rsub(u1, 1.0))), 2.0))
    return mul(radius, cos(mul(u2, 2 * math.pi)))


@on_device
def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing 1 required positional argument: 'size'")
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    u = _uniform(_size(tuple(size)), dt.float64, generator)
    values = np.floor(u._data * (high - low)).astype(np.int64) + low
    return Tensor._wrap(values.astype((dtype or dt.int64).np))


@on_device
def randperm(n: int, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    keys = _uniform((n,), dt.float64, generator)._data
    return Tensor._wrap(np.argsort(keys, kind="stable").astype((dtype or dt.int64).np))


def rand_like(input, *, dtype=None, generator=None, requires_grad=False) -> Tensor:
    return rand(*input.shape, dtype=dtype or input.dtype, generator=generator, requires_grad=requires_grad,
                device=input.device)


def randn_like(input, *, dtype=None, generator=None, requires_grad=False) -> Tensor:
    return randn(*input.shape, dtype=dtype or input.dtype, generator=generator, requires_grad=requires_grad,
                 device=input.device)


def randint_like(input, low, high=None, *, dtype=None) -> Tensor:
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype)


def bernoulli(input, p=None, *, generator=None) -> Tensor:
    from .elementwise import lt

    probs = input if p is None else p
    u = _uniform(tuple(input.shape), input.dtype, generator)
    return lt(u, probs).to(input.dtype)
