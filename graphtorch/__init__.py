"""graphtorch: a PyTorch-compatible framework. `import graphtorch as torch`.

Eager mode runs every op at once on numpy and records autograd; `graphtorch.compile(model)`
traces the same code into a graph, fuses and lowers it to native code.
"""

from . import autograd
from . import dtypes as _dtypes
from ._tensor_str import set_printoptions
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .compiler.dtypes import DType as dtype
from .dtypes import (
    bool_ as bool,
)
from .dtypes import (
    float16,
    float32,
    float64,
    get_default_dtype,
    int8,
    int16,
    int32,
    int64,
    promote_types,
    result_type,
    set_default_dtype,
    uint8,
)
from .ops import methods as _methods  # binds Tensor methods and operators
from .ops.creation import (
    arange,
    as_tensor,
    asarray,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    logspace,
    ones,
    ones_like,
    tensor,
    zeros,
    zeros_like,
)
from .ops.einsum import einsum
from .ops.elementwise import (
    abs,
    absolute,
    add,
    allclose,
    broadcast_shapes,
    ceil,
    clamp,
    clamp_max,
    clamp_min,
    clip,
    cos,
    div,
    divide,
    eq,
    equal,
    erf,
    exp,
    expm1,
    floor,
    floor_divide,
    fmod,
    ge,
    greater,
    greater_equal,
    gt,
    isclose,
    isfinite,
    isinf,
    isnan,
    le,
    less,
    less_equal,
    log,
    log1p,
    log2,
    log10,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    masked_fill,
    maximum,
    minimum,
    mul,
    multiply,
    ne,
    neg,
    negative,
    not_equal,
    pow,
    reciprocal,
    relu,
    remainder,
    round,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    sub,
    subtract,
    tanh,
    true_divide,
    trunc,
    where,
)
from .ops.indexing import (
    argwhere,
    gather,
    index_add,
    index_select,
    masked_select,
    nonzero,
    scatter_add,
    take_along_dim,
    tril,
    triu,
)
from .ops.linalg import bmm, dot, inverse, matmul, mm, mv, outer
from .ops.random import (
    Generator,
    bernoulli,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    seed,
    set_rng_state,
)
from .ops.reduction import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    count_nonzero,
    cummax,
    cummin,
    cumprod,
    cumsum,
    log_softmax,
    logsumexp,
    max,
    mean,
    min,
    norm,
    prod,
    softmax,
    std,
    std_mean,
    sum,
    var,
    var_mean,
)
from .ops.shape import (
    broadcast_tensors,
    broadcast_to,
    cat,
    chunk,
    clone,
    concat,
    concatenate,
    diag,
    diagonal,
    flatten,
    flip,
    hstack,
    movedim,
    narrow,
    permute,
    ravel,
    reshape,
    roll,
    split,
    squeeze,
    stack,
    swapaxes,
    swapdims,
    t,
    tile,
    transpose,
    unbind,
    unflatten,
    unsqueeze,
    vstack,
)
from .ops.sorting import argsort, kthvalue, median, msort, sort, topk
from .tensor import Size, Tensor, device

# aliases PyTorch users write
float = float32
double = float64
half = float16
long = int64
int = int32
short = int16

from . import (
    cuda,  # noqa: E402  (device queries; CUDA tensors come with the CUDA backend)
    datasets,  # noqa: E402  (the small data sets shipped for examples and tests)
    debug,  # noqa: E402  (find_divergence: where a compiled result leaves float64)
    distributed,  # noqa: E402  (torch.distributed over MPI; mpi4py is imported on first use)
    linalg,  # noqa: E402  (torch.linalg: norms, inv, solve, det, slogdet, cholesky)
    nn,  # noqa: E402  (torch.nn: Module, Parameter, layers, losses, functional, init)
    optim,  # noqa: E402  (torch.optim: optimizers and lr schedulers)
    utils,  # noqa: E402  (torch.utils.data: datasets, samplers, DataLoader)
)
from .linalg import det, logdet, slogdet  # noqa: E402
from .serialization import load, save  # noqa: E402  (checkpoints that never execute code)


def _legacy(dtype_):
    def make(*args):
        return Tensor(*args, dtype=dtype_)
    return make


FloatTensor = _legacy(float32)
DoubleTensor = _legacy(float64)
LongTensor = _legacy(int64)
IntTensor = _legacy(int32)
BoolTensor = _legacy(bool)
ByteTensor = _legacy(uint8)
HalfTensor = _legacy(float16)

__version__ = "0.1.0"


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def numel(input) -> int:
    return input.numel()


def is_floating_point(input) -> bool:
    return input.dtype.is_floating_point


def compile(model=None, **kwargs):
    """Compile a module or function: trace, fuse, lower to native code (see graphtorch/compiled.py)."""
    from .optimized_module import compile as _compile

    return _compile(model, **kwargs)


def explain(model, *example_inputs):
    """Compile `model` for these inputs and report every stage (see graphtorch/explaining.py)."""
    from .explaining import explain as _explain

    return _explain(model, *example_inputs)


def report(model_or_fn, *example_inputs, path: str = "graphtorch-report.html", runs: int = 3) -> str:
    """Write the compile report (one self-contained HTML file) and return its path (graphtorch/reporting.py)."""
    from .reporting import report as _report

    return _report(model_or_fn, *example_inputs, path=path, runs=runs)


def get_num_threads() -> int:
    from .runtime.threads import get_num_threads as _get

    return _get()


def set_num_threads(n: int) -> None:
    from .runtime.threads import set_num_threads as _set

    _set(n)
