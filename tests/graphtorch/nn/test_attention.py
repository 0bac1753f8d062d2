"""scaled_dot_product_attention, MultiheadAttention and the Transformer layers against torch:
outputs, input and parameter gradients, masks, reprs, state_dict keys, errors; compiled equals eager."""

import numpy as np
import pytest
from conftest import assert_same, compare, gradcheck, raises_like, randn
from nn_helpers import copy_weights

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.nn.functional as F

torch = pytest.importorskip("torch")


def bool_mask(*shape, seed=0, keep_first=True):
    m = np.random.default_rng(seed).random(shape) > 0.4
    if keep_first:
        m[..., 0] = True  # every query attends somewhere
    return m


# ---------------------------------------------------------------- scaled_dot_product_attention


SDPA_CASES = {
    "plain": dict(),
    "causal": dict(is_causal=True),
    "scale": dict(scale=0.3),
    "bool_mask": dict(attn_mask=bool_mask(5, 6)),
    "float_mask": dict(attn_mask=randn(2, 1, 5, 6, seed=4)),
    "bool_mask_broadcast": dict(attn_mask=bool_mask(3, 1, 6, seed=2)),
}


@pytest.mark.parametrize("case", SDPA_CASES)
def test_sdpa_matches_torch(case):
    mask = SDPA_CASES[case].get("attn_mask")
    kwargs = {k: v for k, v in SDPA_CASES[case].items() if k != "attn_mask"}

    def fn(lib, q, k, v):
        m = None if mask is None else lib.tensor(mask)
        return lib.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, **kwargs)

    compare(fn, randn(2, 3, 5, 4), randn(2, 3, 6, 4, seed=1), randn(2, 3, 6, 7, seed=2), rtol=1e-5, atol=1e-6)


def test_sdpa_grouped_query_heads():
    compare(lambda lib, q, k, v: lib.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True),
            randn(2, 6, 4, 3), randn(2, 2, 5, 3, seed=1), randn(2, 2, 5, 4, seed=2), rtol=1e-5, atol=1e-6)


def test_sdpa_fully_masked_row_is_zero_with_zero_gradient():
    mask = bool_mask(4, 4)
    mask[1] = False
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    for m in (mask, fmask):
        compare(lambda lib, q, m=m: lib.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=lib.tensor(m)),
                randn(2, 4, 3), rtol=1e-5, atol=1e-6)


def test_sdpa_shapes_dtype_and_grad_fn():
    q = gt.randn(4, 3, dtype=gt.float64, requires_grad=True)
    out = F.scaled_dot_product_attention(q, q, q)
    assert out.shape == (4, 3) and out.dtype is gt.float64
    assert out.grad_fn.name() == "ScaledDotProductFlashAttentionForCpuBackward0"


def test_sdpa_dropout_scales_kept_weights():
    gt.manual_seed(0)
    q = gt.zeros(1, 200, 4)  # uniform weights 1/200: each output is (kept count) / 200 / (1 - p)
    out = F.scaled_dot_product_attention(q, q, gt.ones(1, 200, 1), dropout_p=0.5)
    kept = out.numpy() * 200 * 0.5
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-4)
    assert 0.4 < kept.mean() / 200 < 0.6
    assert float(F.scaled_dot_product_attention(q, q, gt.ones(1, 200, 1), dropout_p=1.0).abs().sum()) == 0


def test_sdpa_errors_like_torch():
    q = randn(2, 4, 3)
    for kwargs in (dict(dropout_p=1.5), dict(attn_mask=np.ones((4, 4), bool), is_causal=True), dict(value=randn(2, 4, 3).astype(np.float64)), dict(query=randn(3))):
        def call(lib, kwargs=kwargs):
            args = {"query": q, "key": q, "value": q, "dropout_p": 0.0, **kwargs}
            args = {k: lib.tensor(v) if isinstance(v, np.ndarray) else v for k, v in args.items()}
            if args["query"].ndim == 1:
                args["key"] = args["value"] = args["query"]
            return lib.nn.functional.scaled_dot_product_attention(**args)
        raises_like(lambda: call(torch), lambda: call(gt))


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_gradcheck(causal):
    mask = gt.tensor(bool_mask(3, 4))
    rand64 = [np.random.default_rng(s).standard_normal(shape) for s, shape in ((0, (2, 3, 2)), (1, (2, 4, 2)),
                                                                             (2, (2, 4, 3)))]
    kwargs = dict(is_causal=True) if causal else dict(attn_mask=mask)
    gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kwargs), rand64)


# ---------------------------------------------------------------- MultiheadAttention


def run_pair(g, t, inputs, call, rtol=1e-5, atol=1e-6, seed=3):
    """call(module, lib, *tensors) on both frameworks with torch's weights: outputs, input and
    parameter gradients agree. Float inputs require grad."""
    copy_weights(g, t)
    gin = [gt.tensor(a.copy(), requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray) else a for a in inputs]
    tin = [torch.tensor(a.copy(), requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
           for a in inputs]
    got, want = call(g, gt, *gin), call(t, torch, *tin)
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    for k, (a, b) in enumerate(zip(got, want)):
        assert (a is None) == (b is None), f"output {k}"
        if b is not None:
            assert_same(a, b, rtol=rtol, atol=atol, what=f"output {k}")
    v = np.random.default_rng(seed).standard_normal(tuple(want[0].shape)).astype(np.float32)
    (got[0] * gt.tensor(v)).sum().backward()
    (want[0] * torch.tensor(v)).sum().backward()
    for k, (a, b) in enumerate(zip(gin, tin)):
        if isinstance(b, torch.Tensor) and b.requires_grad:
            assert_same(a.grad, b.grad, rtol=rtol * 10, atol=atol * 10, what=f"gradient of input {k}")
    tparams = dict(t.named_parameters())
    for name, p in g.named_parameters():
        if tparams[name].grad is None:
            assert p.grad is None, name
        else:
            assert_same(p.grad, tparams[name].grad, rtol=rtol * 10, atol=atol * 10, what=f"gradient of {name}")
    return got


def both(name, *args, **kwargs):
    return getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


def mha_call(**kwargs):
    masks = {key: kwargs.pop(key) for key in ("attn_mask", "key_padding_mask") if key in kwargs}

    def call(m, lib, a, b, c):
        extra = {key: lib.tensor(val) for key, val in masks.items()}
        return m(a, b, c, **extra, **kwargs)
    return call


MHA_CASES = {
    "self": (dict(), (5, 2, 8), dict()),
    "batch_first": (dict(batch_first=True), (2, 5, 8), dict()),
    "unbatched": (dict(), (5, 8), dict()),
    "no_weights": (dict(), (5, 2, 8), dict(need_weights=False)),
    "per_head_weights": (dict(), (5, 2, 8), dict(average_attn_weights=False)),
    "bool_attn_mask": (dict(), (5, 2, 8), dict(attn_mask=~bool_mask(5, 5))),
    "float_attn_mask_3d": (dict(), (5, 2, 8), dict(attn_mask=randn(4, 5, 5, seed=3), need_weights=False)),
    "key_padding": (dict(batch_first=True), (2, 5, 8), dict(key_padding_mask=np.array([[0, 0, 0, 1, 1],
                                                                                      [0, 0, 0, 0, 0]], bool))),
    "padding_and_mask": (dict(), (5, 2, 8), dict(key_padding_mask=np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 1]], bool),
                                                 attn_mask=~bool_mask(5, 5, seed=6), need_weights=False)),
    "bias_kv_zero_attn": (dict(add_bias_kv=True, add_zero_attn=True), (5, 2, 8), dict()),
    "kdim_vdim_no_bias": (dict(kdim=3, vdim=6, bias=False), (5, 2, 8), dict()),
}


@pytest.mark.parametrize("case", MHA_CASES)
def test_multihead_attention(case):
    ctor, shape, kwargs = MHA_CASES[case]
    g, t = both("MultiheadAttention", 8, 2, **ctor)
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    k_shape = (*shape[:-1], ctor.get("kdim", 8))
    v_shape = (*shape[:-1], ctor.get("vdim", 8))
    run_pair(g, t, [randn(*shape), randn(*k_shape, seed=1), randn(*v_shape, seed=2)],
             mha_call(**dict(kwargs)))


def test_multihead_attention_cross_lengths_and_causal_hint():
    g, t = both("MultiheadAttention", 6, 3)
    mask = np.triu(np.ones((4, 4), bool), 1)
    run_pair(g, t, [randn(4, 2, 6), randn(4, 2, 6, seed=1), randn(4, 2, 6, seed=2)],
             mha_call(attn_mask=mask, is_causal=True, need_weights=False))
    run_pair(g, t, [randn(3, 2, 6), randn(7, 2, 6, seed=1), randn(7, 2, 6, seed=2)], mha_call())


def test_multihead_attention_errors_like_torch():
    raises_like(lambda: torch.nn.MultiheadAttention(7, 2), lambda: nn.MultiheadAttention(7, 2))
    g, t = both("MultiheadAttention", 8, 2)
    x = randn(5, 2, 8)
    for kwargs in (dict(attn_mask=np.zeros((4, 5), bool)), dict(attn_mask=np.zeros((3, 5, 5), bool)),
                   dict(key_padding_mask=np.zeros((2, 4), bool)), dict(attn_mask=np.zeros((5, 5), np.int64))):
        call = mha_call(**kwargs)
        raises_like(lambda c=call: c(t, torch, *[torch.tensor(x)] * 3), lambda c=call: c(g, gt, *[gt.tensor(x)] * 3))
    raises_like(lambda: t(*[torch.tensor(x)] * 3, is_causal=True), lambda: g(*[gt.tensor(x)] * 3, is_causal=True))
    raises_like(lambda: t(*[torch.tensor(randn(5, 2, 6))] * 3), lambda: g(*[gt.tensor(randn(5, 2, 6))] * 3))
    raises_like(lambda: t(torch.zeros(5, 2, 8), torch.zeros(5, 8), torch.zeros(5, 8)),
                lambda: g(gt.zeros(5, 2, 8), gt.zeros(5, 8), gt.zeros(5, 8)))


def test_multihead_attention_init_distribution():
    gt.manual_seed(0)
    m = nn.MultiheadAttention(64, 4, add_bias_kv=True)
    bound = np.sqrt(6 / (64 + 192))  # xavier_uniform over (3E, E)
    w = m.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert float(m.in_proj_bias.abs().sum()) == 0 and float(m.out_proj.bias.abs().sum()) == 0
    assert m.bias_k.shape == (1, 1, 64)


# ---------------------------------------------------------------- Transformer layers


LAYER_CASES = {
    "post_norm": dict(),
    "pre_norm_gelu": dict(norm_first=True, activation="gelu"),
    "batch_first_module_activation": dict(batch_first=True, activation=None),  # nn.SiLU() in each framework
    "no_bias": dict(bias=False, layer_norm_eps=1e-3),
}


def layer_kwargs(case, lib):
    kwargs = dict(LAYER_CASES[case], dropout=0.0)
    if "activation" in kwargs and kwargs["activation"] is None:
        kwargs["activation"] = lib.nn.SiLU()
    return kwargs


@pytest.mark.parametrize("case", LAYER_CASES)
def test_transformer_encoder_layer(case):
    g = nn.TransformerEncoderLayer(8, 2, 16, **layer_kwargs(case, gt))
    t = torch.nn.TransformerEncoderLayer(8, 2, 16, **layer_kwargs(case, torch))
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    mask = np.triu(np.ones((5, 5), bool), 1)
    pad = np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], bool)

    def call(m, lib, x):
        return m(x, src_mask=lib.tensor(mask), src_key_padding_mask=lib.tensor(pad))
    run_pair(g, t, [randn(2, 5, 8) if g.self_attn.batch_first else randn(5, 2, 8)], call)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_transformer_decoder_layer(case):
    g = nn.TransformerDecoderLayer(8, 2, 16, **layer_kwargs(case, gt))
    t = torch.nn.TransformerDecoderLayer(8, 2, 16, **layer_kwargs(case, torch))
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    bf = g.self_attn.batch_first
    causal = np.triu(np.ones((4, 4), bool), 1)

    def call(m, lib, tgt, mem):
        return m(tgt, mem, tgt_mask=lib.tensor(causal), tgt_is_causal=True)
    run_pair(g, t, [randn(*((2, 4, 8) if bf else (4, 2, 8))), randn(*((2, 6, 8) if bf else (6, 2, 8)), seed=1)], call)


def test_transformer_encoder_stack_with_norm():
    g = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2, nn.LayerNorm(8))
    t = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2, torch.nn.LayerNorm(8),
                                    enable_nested_tensor=False)
    assert list(g.state_dict()) == list(t.state_dict())
    assert g.layers[0].linear1.weight is not g.layers[1].linear1.weight
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    assert_same(mask, torch.nn.Transformer.generate_square_subsequent_mask(5))
    run_pair(g, t, [randn(5, 3, 8)], lambda m, lib, x: m(x, mask=lib.nn.Transformer.generate_square_subsequent_mask(5),
                                                          is_causal=True))


@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer(batch_first):
    kwargs = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=12, dropout=0.0,
                  batch_first=batch_first)
    g, t = nn.Transformer(**kwargs), torch.nn.Transformer(**kwargs)
    assert list(g.state_dict()) == list(t.state_dict())
    shapes = ((3, 6, 8), (3, 4, 8)) if batch_first else ((6, 3, 8), (4, 3, 8))

    def call(m, lib, src, tgt):
        return m(src, tgt, tgt_mask=lib.nn.Transformer.generate_square_subsequent_mask(4))
    run_pair(g, t, [randn(*shapes[0]), randn(*shapes[1], seed=1)], call, rtol=2e-5, atol=2e-6)
    raises_like(lambda: t(torch.zeros(*shapes[0]), torch.zeros(5, 5, 8)),
                lambda: g(gt.zeros(*shapes[0]), gt.zeros(5, 5, 8)))
    raises_like(lambda: t(torch.zeros(*shapes[0]), torch.zeros(*shapes[1][:2], 6)),
                lambda: g(gt.zeros(*shapes[0]), gt.zeros(*shapes[1][:2], 6)))


def test_transformer_init_and_activation_errors():
    gt.manual_seed(0)
    m = nn.Transformer(16, 2, 1, 1, 32)
    w = m.encoder.layers[0].linear1.weight.detach().numpy()
    assert np.abs(w).max() <= np.sqrt(6 / (16 + 32))  # xavier_uniform over every matrix
    raises_like(lambda: torch.nn.TransformerEncoderLayer(8, 2, activation="tanh"),
                lambda: nn.TransformerEncoderLayer(8, 2, activation="tanh"))


# ---------------------------------------------------------------- compiled equals eager


def test_compiled_encoder_layer_training_step_equals_eager():
    gt.manual_seed(0)
    model = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True)
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    x = gt.tensor(randn(3, 5, 8))

    def loss_of(m):
        out = m(x, src_mask=mask)
        out.square().mean().backward()
        return out, [p.grad.clone() for p in model.parameters()]

    eager, eager_grads = loss_of(model)
    model.zero_grad()
    compiled, compiled_grads = loss_of(gt.compile(model))
    assert_same(compiled, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled_grads, eager_grads):
        assert_same(a, b, rtol=1e-5, atol=1e-6)


def test_compiled_sdpa_and_mha_equal_eager():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    pad = gt.tensor(np.array([[0, 0, 0, 1], [0, 0, 0, 0]], bool))

    def fn(q, k):
        a = F.scaled_dot_product_attention(q, k, k, is_causal=True)
        b, w = mha(q, k, k, key_padding_mask=pad)
        return a.sum(-1) + b.sum(-1) + w.sum(-1)

    q, k = gt.tensor(randn(2, 4, 8)), gt.tensor(randn(2, 4, 8, seed=1))
    compiled = gt.compile(fn)
    compiled(q, k)  # a function's first call runs eagerly; the second compiles
    assert_same(compiled(q, k), fn(q, k), rtol=1e-5, atol=1e-6)
    assert len(compiled.entries) == 1


def test_dropout_only_in_training():
    gt.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5)
    x = gt.tensor(randn(5, 2, 8))
    a, b = layer(x).detach().numpy(), layer(x).detach().numpy()
    assert not np.allclose(a, b)
    layer.eval()
    np.testing.assert_array_equal(layer(x).detach().numpy(), layer(x).detach().numpy())
    mha = nn.MultiheadAttention(8, 2, dropout=0.5)
    _, w = mha(x, x, x, average_attn_weights=False)
    kept = w.detach().numpy()  # dropped weights are 0, kept ones doubled: rows no longer sum to 1
    assert (kept == 0).any() and not np.allclose(kept.sum(-1), 1)
    mha.eval()
    np.testing.assert_allclose(mha(x, x, x)[1].detach().numpy().sum(-1), 1, rtol=1e-5)
