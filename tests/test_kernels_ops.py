"""Tests of the elementwise ops, RoPE and KV-cache attention kernels (csrc/ops.c, attention.c).

Each kernel is compared with a float64 numpy reference under an explicit threshold. Inputs come
from a seeded np.random.default_rng (never zeros) and use odd sizes so vector tails are hit.
"""
import numpy as np
import pytest

from slmkit import _native as nat
from utils import kernel_variants

SEED = 1234


VARIANTS = kernel_variants()


@pytest.fixture(params=VARIANTS)
def variant(request):
    """Run the test with each kernel variant (attention has a SIMD kernel and a C reference)."""
    nat.set_kernel(request.param)
    yield request.param
    nat.set_kernel(VARIANTS[-1])


def rng(*salt):
    return np.random.default_rng([SEED, *salt])


def randn(r, *shape, scale=1.0):
    return (r.standard_normal(shape) * scale).astype(np.float32)


def max_rel(a, ref):
    return float(np.max(np.abs(a.astype(np.float64) - ref) / np.abs(ref)))


def max_abs(a, ref):
    return float(np.max(np.abs(a.astype(np.float64) - ref)))


# ---- references (float64) ------------------------------------------------------------------

def ref_rmsnorm(x, w, eps):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w.astype(np.float64)


def ref_silu_mul(g, u):
    g = g.astype(np.float64)
    return g / (1.0 + np.exp(-g)) * u.astype(np.float64)


def ref_softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_rope(x, pos, n_heads, head_dim, base, interleaved):
    """x[m, n_heads*head_dim] rotated by theta_j = pos * base^(-2j/head_dim)."""
    m = len(pos)
    x = x.astype(np.float64).reshape(m, n_heads, head_dim)
    half = head_dim // 2
    inv = base ** (-2.0 * np.arange(half) / head_dim)          # [half]
    ang = np.asarray(pos, np.float64)[:, None] * inv[None, :]   # [m, half]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]      # [m, 1, half]
    out = x.copy()
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
    else:
        a, b = x[..., :half], x[..., half:]
        out[..., :half], out[..., half:] = a * c - b * s, a * s + b * c
    return out.reshape(m, n_heads * head_dim)


def ref_attention(q, k, v, start_pos, n_heads, n_kv, head_dim):
    """q[m, H*hd] rows at positions start_pos.. over k, v[start_pos+m, n_kv, hd] (all positions)."""
    m = q.shape[0]
    n_ctx = start_pos + m
    q = q.astype(np.float64).reshape(m, n_heads, head_dim)
    k = k.astype(np.float64).reshape(n_ctx, n_kv, head_dim)
    v = v.astype(np.float64).reshape(n_ctx, n_kv, head_dim)
    kv_of = np.arange(n_heads) // (n_heads // n_kv)
    kh, vh = k[:, kv_of, :], v[:, kv_of, :]                       # [n_ctx, H, hd]
    s = np.einsum("ihd,phd->hip", q, kh) / np.sqrt(head_dim)      # [H, m, n_ctx]
    mask = np.arange(n_ctx)[None, :] > (start_pos + np.arange(m))[:, None]
    s[:, mask] = -np.inf
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.einsum("hip,phd->ihd", p, vh).reshape(m, n_heads * head_dim)


# ---- rmsnorm, silu_mul, add, softmax -------------------------------------------------------

@pytest.mark.parametrize("d", [64, 172, 576, 4099])
@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_rmsnorm(d, eps):
    r = rng(1, d)
    x, w = randn(r, 7, d, scale=3.0), randn(r, d)
    ref = ref_rmsnorm(x, w, eps)
    assert max_rel(nat.rmsnorm(x, w, eps), ref) < 1e-5
    # in place: out aliases x
    y = x.copy()
    nat.rmsnorm(y, w, eps, out=y)
    assert max_rel(y, ref) < 1e-5


def test_rmsnorm_tiny_and_huge_rows():
    # a float32 sum of squares would overflow at 1e20 and lose the eps term at 1e-3
    r = rng(2)
    w = randn(r, 172)
    for scale in (1e-3, 1e20):
        x = randn(r, 3, 172, scale=scale)
        assert max_rel(nat.rmsnorm(x, w, 1e-6), ref_rmsnorm(x, w, 1e-6)) < 1e-5


@pytest.mark.parametrize("n", [1, 64, 172, 577])
def test_silu_mul(n, variant):
    r = rng(3, n)
    g, u = randn(r, 3, n, scale=4.0), randn(r, 3, n)
    g[0, 0] = -120.0   # expf(-g) overflows: result must be -0, not nan
    ref = ref_silu_mul(g, u)
    out = nat.silu_mul(g, u)
    assert np.all(np.isfinite(out))
    assert max_abs(out, ref) < 1e-5 * (1 + np.abs(ref)).max()
    assert max_rel(out[np.abs(ref) > 1e-30], ref[np.abs(ref) > 1e-30]) < 1e-5
    for alias in ("gate", "up"):
        gg, uu = g.copy(), u.copy()
        nat.silu_mul(gg, uu, out=gg if alias == "gate" else uu)
        np.testing.assert_array_equal(gg if alias == "gate" else uu, out)


@pytest.mark.parametrize("n", [1, 5, 172, 576])
def test_add(n):
    r = rng(4, n)
    x, y = randn(r, 2, n), randn(r, 2, n)
    expect = x + y
    nat.add_(x, y)
    np.testing.assert_array_equal(x, expect)


@pytest.mark.parametrize("n", [1, 7, 172, 2049])
def test_softmax(n):
    r = rng(5, n)
    x = randn(r, 4, n, scale=5.0)
    x[1] += 1000.0   # without the max subtraction expf would overflow
    x[2] -= 1000.0   # ... or underflow to 0/0
    ref = ref_softmax(x)
    nat.softmax_(x)
    assert np.all(np.isfinite(x))
    assert max_abs(x, ref) < 1e-6
    big = ref > 1e-30
    assert max_rel(x[big], ref[big]) < 1e-5
    np.testing.assert_allclose(x.astype(np.float64).sum(axis=-1), 1.0, atol=1e-5)


# ---- RoPE ----------------------------------------------------------------------------------

@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("base", [10000.0, 100000.0])
@pytest.mark.parametrize("n_heads,head_dim", [(3, 8), (4, 64), (2, 128)])
def test_rope(interleaved, base, n_heads, head_dim):
    r = rng(6, head_dim, int(base))
    pos = np.concatenate([[0, 1, 2, 17], r.integers(0, 4097, 12), [4095, 4096]]).astype(np.int32)
    x = randn(r, len(pos), n_heads * head_dim)
    ref = ref_rope(x, pos, n_heads, head_dim, base, interleaved)
    y = nat.rope_(x.copy(), pos, n_heads, head_dim, base, interleaved)
    assert max_abs(y, ref) < 1e-5
    # position 0 is the identity
    np.testing.assert_array_equal(y[0], x[0])


@pytest.mark.parametrize("head_dim", [8, 64])
def test_rope_conventions_related_by_permutation(head_dim):
    """Interleaved RoPE of x with its halves zipped into pairs == rotate_half RoPE of x, zipped.

    This is the permutation that converts HF q/k weights to GGUF/Meta order."""
    r = rng(7, head_dim)
    n_heads, half = 3, head_dim // 2
    perm = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)  # 0,h,1,h+1..
    pos = r.integers(0, 4097, 9).astype(np.int32)
    x = randn(r, len(pos), n_heads, head_dim)
    hf = nat.rope_(x.reshape(len(pos), -1).copy(), pos, n_heads, head_dim, 10000.0, False)
    meta = nat.rope_(np.ascontiguousarray(x[..., perm]).reshape(len(pos), -1), pos, n_heads,
                     head_dim, 10000.0, True)
    hf = hf.reshape(len(pos), n_heads, head_dim)[..., perm].reshape(len(pos), -1)
    np.testing.assert_array_equal(meta, hf)


# ---- attention -----------------------------------------------------------------------------

ATTN_SHAPES = [(8, 4, 8), (8, 4, 64), (9, 3, 64), (4, 4, 64), (9, 3, 8), (4, 1, 64), (4, 2, 128), (2, 1, 6)]


def make_qkv(r, n, n_heads, n_kv, head_dim):
    return (randn(r, n, n_heads * head_dim), randn(r, n, n_kv * head_dim),
            randn(r, n, n_kv * head_dim))


def empty_cache(r, n_kv, max_seq, head_dim):
    # garbage (not zeros) past the filled positions: the kernel must never read it
    return randn(r, n_kv, max_seq, head_dim, scale=1e3), randn(r, n_kv, max_seq, head_dim, scale=1e3)


@pytest.mark.parametrize("n_heads,n_kv,head_dim", ATTN_SHAPES)
@pytest.mark.parametrize("m", [1, 5, 37])
def test_attention_one_shot(n_heads, n_kv, head_dim, m, variant):
    r = rng(8, n_heads, n_kv, head_dim, m)
    max_seq = 50
    q, k, v = make_qkv(r, m, n_heads, n_kv, head_dim)
    kc, vc = empty_cache(r, n_kv, max_seq, head_dim)
    out = nat.attention(q, k, v, kc, vc, 0, n_heads, n_kv, head_dim)
    assert max_abs(out, ref_attention(q, k, v, 0, n_heads, n_kv, head_dim)) < 1e-5
    # the new rows were copied into the cache, [n_kv, max_seq, head_dim]
    np.testing.assert_array_equal(kc[:, :m], k.reshape(m, n_kv, head_dim).transpose(1, 0, 2))
    np.testing.assert_array_equal(vc[:, :m], v.reshape(m, n_kv, head_dim).transpose(1, 0, 2))


@pytest.mark.parametrize("n_heads,n_kv,head_dim", ATTN_SHAPES)
def test_attention_kv_cache_lifecycle(n_heads, n_kv, head_dim, variant):
    """Prefill, then decode steps (and one multi-row chunk) == one-shot over the whole sequence."""
    r = rng(9, n_heads, n_kv, head_dim)
    max_seq, steps = 80, [23, 1, 1, 1, 6, 1, 1]   # chunk sizes in order
    total = sum(steps)
    q, k, v = make_qkv(r, total, n_heads, n_kv, head_dim)
    kc1, vc1 = empty_cache(r, n_kv, max_seq, head_dim)
    whole = nat.attention(q, k, v, kc1, vc1, 0, n_heads, n_kv, head_dim)
    assert max_abs(whole, ref_attention(q, k, v, 0, n_heads, n_kv, head_dim)) < 1e-5

    kc, vc = empty_cache(r, n_kv, max_seq, head_dim)
    pos = 0
    for step in steps:
        sl = slice(pos, pos + step)
        out = nat.attention(q[sl], k[sl], v[sl], kc, vc, pos, n_heads, n_kv, head_dim)
        ref = ref_attention(q[sl], k[:pos + step], v[:pos + step], pos, n_heads, n_kv, head_dim)
        assert max_abs(out, ref) < 1e-5
        # the same rows of the one-shot call: identical arithmetic, so bit-identical
        np.testing.assert_array_equal(out, whole[sl])
        pos += step
    np.testing.assert_array_equal(kc[:, :total], kc1[:, :total])
    np.testing.assert_array_equal(vc[:, :total], vc1[:, :total])


def test_attention_long_decode(variant):
    """A decode step over ~2k cached positions, the size of a real generation."""
    r = rng(10)
    n_heads, n_kv, head_dim, max_seq = 8, 4, 64, 2048
    q, k, v = make_qkv(r, max_seq, n_heads, n_kv, head_dim)
    kc, vc = empty_cache(r, n_kv, max_seq, head_dim)
    nat.attention(q[:-1], k[:-1], v[:-1], kc, vc, 0, n_heads, n_kv, head_dim)
    out = nat.attention(q[-1:], k[-1:], v[-1:], kc, vc, max_seq - 1, n_heads, n_kv, head_dim)
    ref = ref_attention(q[-1:], k, v, max_seq - 1, n_heads, n_kv, head_dim)
    assert max_abs(out, ref) < 1e-5


@pytest.mark.parametrize("n_heads,n_kv,head_dim", [(8, 4, 64), (9, 3, 8), (4, 4, 64)])
@pytest.mark.parametrize("m,start_pos", [(1, 40), (3, 10), (33, 0)])
def test_attention_thread_counts_agree(n_heads, n_kv, head_dim, m, start_pos):
    r = rng(11, n_heads, head_dim, m)
    max_seq = 64
    q, k, v = make_qkv(r, start_pos + m, n_heads, n_kv, head_dim)
    results = []
    for n_threads in (1, 2, 3, 5):
        pool = nat.Pool(n_threads)
        kc, vc = empty_cache(rng(12), n_kv, max_seq, head_dim)
        if start_pos:
            nat.attention(q[:start_pos], k[:start_pos], v[:start_pos], kc, vc, 0, n_heads, n_kv,
                          head_dim, pool=pool)
        s = slice(start_pos, None)
        results.append(nat.attention(q[s], k[s], v[s], kc, vc, start_pos, n_heads, n_kv, head_dim,
                                     pool=pool))
    ref = ref_attention(q[start_pos:], k, v, start_pos, n_heads, n_kv, head_dim)
    assert max_abs(results[0], ref) < 1e-5
    for res in results[1:]:   # each head is computed the same way whatever the split
        np.testing.assert_array_equal(res, results[0])


def test_attention_out_aliases_q():
    r = rng(13)
    n_heads, n_kv, head_dim = 8, 4, 64
    q, k, v = make_qkv(r, 9, n_heads, n_kv, head_dim)
    kc, vc = empty_cache(r, n_kv, 16, head_dim)
    expect = nat.attention(q, k, v, kc.copy(), vc.copy(), 0, n_heads, n_kv, head_dim)
    qq = q.copy()
    nat.attention(qq, k, v, kc, vc, 0, n_heads, n_kv, head_dim, out=qq)
    np.testing.assert_array_equal(qq, expect)


def test_attention_rejects_bad_head_counts():
    r = rng(14)
    q, k, v = make_qkv(r, 2, 9, 4, 8)
    kc, vc = empty_cache(r, 4, 16, 8)
    before = kc.copy()
    with pytest.raises(ValueError, match="n_heads=9 is not a multiple of n_kv_heads=4"):
        nat.attention(q, k, v, kc, vc, 0, 9, 4, 8)
    # the C kernel checks it too, for callers that bypass the wrapper
    out = np.empty_like(q)
    rc = nat.lib.slm_attention(nat.ffi.NULL, nat._ptr(q), nat._ptr(k), nat._ptr(v), nat._ptr(kc),
                               nat._ptr(vc), nat._ptr(out), 2, 0, 16, 9, 4, 8)
    assert rc == nat.lib.SLM_E_SHAPE
    np.testing.assert_array_equal(kc, before)   # nothing written on error


def test_attention_rejects_cache_overflow():
    r = rng(15)
    q, k, v = make_qkv(r, 4, 8, 4, 8)
    kc, vc = empty_cache(r, 4, 16, 8)
    with pytest.raises(ValueError, match="exceed the KV cache"):
        nat.attention(q, k, v, kc, vc, 13, 8, 4, 8)
    # the C kernel checks it too, for callers that bypass the wrapper
    ffi, lib = nat.ffi, nat.lib
    out = np.empty_like(q)
    before = kc.copy()
    rc = lib.slm_attention(ffi.NULL, nat._ptr(q), nat._ptr(k), nat._ptr(v), nat._ptr(kc),
                           nat._ptr(vc), nat._ptr(out), 4, 13, 16, 8, 4, 8)
    assert rc == lib.SLM_E_SHAPE
    np.testing.assert_array_equal(kc, before)
