"""The float32 exp/log/tanh/sigmoid/erf of compiler/llvm/vecmath.py: error in ulp against float64
numpy over dense sweeps and random bit patterns, exact results on the edge values, and that the
kernel loop is vectorized with no libm call left."""

import math

import numpy as np
import pytest
from llvm_helpers import compiled, unary_graph

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.llvm import build, single_groups

MAX_ULP = {"exp": 1.0, "log": 1.0, "tanh": 2.0, "sigmoid": 2.5, "erf": 2.0}
_erf64 = np.vectorize(math.erf, otypes=[np.float64])


@np.errstate(all="ignore")
def exact(name: str, x: np.ndarray) -> np.ndarray:
    """The float64 value (within 1e-15 relative: far below a float32 ulp)."""
    x = x.astype(np.float64)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "erf":
        return _erf64(x)
    return getattr(np, name)(x)


@np.errstate(all="ignore")
def ulp_error(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 spacing at want (subnormal spacing at the bottom)."""
    rounded = want.astype(np.float32)
    spacing = np.maximum(np.spacing(np.abs(rounded)).astype(np.float64), 2.0**-149)
    err = np.abs(got.astype(np.float64) - want) / spacing
    err[got == rounded] = 0.0  # also equal infinities
    err[np.isnan(got) & np.isnan(want)] = 0.0
    return np.where(np.isnan(err), np.inf, err)


def run(name: str, x: np.ndarray) -> np.ndarray:
    return compiled(unary_graph(name, x.shape, dt.float32), x)[0]


def sweep() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([
        np.linspace(-12, 12, 400_001, dtype=np.float32),  # every range split of tanh/erf/exp
        np.linspace(-0.7, 0.7, 200_001, dtype=np.float32),  # the series' far ends
        (np.exp(rng.uniform(-103, 88, 200_000)) * rng.choice([-1, 1], 200_000)).astype(np.float32),
        np.linspace(-104, 89, 200_001, dtype=np.float32),
        bits,  # every binade, subnormals and NaN payloads included
    ])


EDGES = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-40, -3e-39, 1.1754942e-38,
                  1.1754944e-38, 3.4028235e38, -3.4028235e38, 88.72283, 88.72284, -87.33654, -103.97, -103.98,
                  -104.0, 1.0, -1.0, 0.625, -0.625, 0.62499994, 1e-7, 9.0, -9.1, 20.0, 4.0, -3.93], np.float32)


@pytest.mark.parametrize("name", sorted(MAX_ULP))
def test_error_within_bound(name):
    x = sweep()
    err = ulp_error(run(name, x), exact(name, x))
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[name], f"{name}({x[worst]!r}): {err[worst]:.2f} ulp"


@pytest.mark.parametrize("name", sorted(MAX_ULP))
@np.errstate(over="ignore")
def test_edges_as_numpy(name):
    """NaN, infinities, signed zeros, subnormals and overflow: what the float32 rounding of the exact
    value is, up to the stated bound, and the sign of zero kept."""
    got, want = run(name, EDGES), exact(name, EDGES)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert ulp_error(got, want).max() <= MAX_ULP[name]
    zeros = want == 0
    assert np.array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]))
    assert np.array_equal(np.isinf(got), np.isinf(want.astype(np.float32)))


def test_exact_corners():
    assert run("exp", np.array([0.0, -np.inf, 89.0, -104.0], np.float32)).tolist() == [1.0, 0.0, np.inf, 0.0]
    assert run("log", np.array([1.0, 0.0, -0.0, np.inf], np.float32)).tolist() == [0.0, -np.inf, -np.inf, np.inf]
    assert np.isnan(run("log", np.array([-1.0, -np.inf, -1e-45], np.float32))).all()
    tiny = float(np.float32(1e-45))  # the smallest subnormal: tanh keeps it
    assert run("tanh", np.array([np.inf, -np.inf, 50.0, tiny], np.float32)).tolist() == [1.0, -1.0, 1.0, tiny]
    assert run("sigmoid", np.array([np.inf, -np.inf, 0.0], np.float32)).tolist() == [1.0, 0.0, 0.5]
    assert run("erf", np.array([np.inf, -np.inf, 5.0, -0.0], np.float32)).tolist() == [1.0, -1.0, 1.0, -0.0]
    assert np.signbit(run("erf", np.array([-0.0], np.float32)))[0]


def test_against_torch():
    torch = pytest.importorskip("torch")
    x = sweep()
    for name in sorted(MAX_ULP):
        want = getattr(torch, name)(torch.from_numpy(x)).numpy()
        got = run(name, x)
        err = ulp_error(got, want.astype(np.float64))
        err[np.abs(got) < 2.0**-126] = 0.0  # torch's sigmoid gives 0 where the exact value is subnormal
        assert err.max() <= MAX_ULP[name] + 1.0, name  # torch's float32 functions are not exact either


@pytest.mark.parametrize("name", sorted(MAX_ULP))
def test_loop_is_vectorized_without_libm(name):
    graph = unary_graph(name, (1000,), dt.float32)
    ir_text = build(graph, single_groups(graph), cache=False).artifacts["llvm_ir_optimized"]
    assert "x float>" in ir_text, "no vector loop"
    assert not any(f"@{f}f(" in ir_text for f in ("tanh", "erf", "exp", "log", "expm1")), "a libm call is left"


@pytest.mark.parametrize("name", ["exp", "tanh", "erf"])
def test_float64_keeps_libm(name):
    """float64 is not rewritten: libm's results, within numpy's own SIMD float64 functions' rounding."""
    x = np.linspace(-30, 30, 10_001)
    got = compiled(unary_graph(name, x.shape, dt.float64), x)[0]
    want = _erf64(x) if name == "erf" else getattr(np, name)(x)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_erf_polynomials_follow_their_functions():
    """The economized (power-series) interpolants erf evaluates stay near the float64 functions they
    replace: each adds at most half a float32 ulp of erf (6e-8 from erf(1) = 0.84 up)."""
    from graphtorch.compiler.llvm import vecmath

    z = np.linspace(0.0, 1.0, 2001)
    q = np.array([vecmath._erf_series_rest(v) for v in z])
    assert np.abs(np.polynomial.polynomial.polyval(z, vecmath.ERF_SERIES) - q).max() < 1e-8
    t = np.linspace(-1.5, 1.5, 3001)  # x - 2.5 for x in [1, 4]
    erfc = np.array([math.erfc(2.5 + v) for v in t])
    assert np.abs(np.polynomial.polynomial.polyval(t, vecmath.ERFC) - erfc).max() < 3e-8
