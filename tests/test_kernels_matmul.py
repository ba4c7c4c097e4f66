"""Tests for the quantisation and matmul kernels (csrc/quant.c, matmul*.c, dispatch.c,
threadpool.c), through the slmkit._native wrapper.

References are numpy re-implementations of the ggml block formulas (bit-exact where the C code
promises it) and float64 matmuls with error bounds that account for activation quantisation.
"""
import numpy as np
import pytest

from slmkit import _native as nat
from utils import kernel_variants

QTYPES = [nat.Q8_0, nat.Q4_0, nat.Q4_1]
ALL_TYPES = [nat.F32, nat.F16, nat.BF16] + QTYPES


VARIANTS = kernel_variants()


@pytest.fixture
def kernel():
    """Restore the best variant after a test that forces one."""
    yield
    nat.set_kernel(VARIANTS[-1])


def rand(rng, *shape, scale=1.0):
    # random normal with an occasional outlier, like real activations; never exactly zero
    x = rng.standard_normal(shape).astype(np.float32) * scale
    x[np.abs(x) < 1e-6] = 1e-3
    return x


def pad32(x):
    n, k = x.shape
    kp = -(-k // 32) * 32
    out = np.zeros((n, kp), np.float32)
    out[:, :k] = x
    return out.reshape(n, kp // 32, 32)


def roundf(v):
    """C roundf (half away from zero) in float32."""
    r = np.trunc(v)
    return r + np.where(np.abs(v - r) >= 0.5, np.sign(v), 0).astype(np.float32)


# ---- numpy references of the ggml block formulas ----------------------------------------------

def ref_quant_q8_0(x):
    b = pad32(x)
    amax = np.abs(b).max(axis=2, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = roundf(b * idv).astype(np.int8)
    return d[..., 0].astype(np.float16), q


def unpack_q8_0(raw, k):
    n = raw.shape[0]
    blk = raw.reshape(n, -1, 34)
    d = blk[:, :, :2].copy().view(np.float16)[..., 0]
    q = blk[:, :, 2:].view(np.int8)
    return d, q


def unpack_q4(raw, k, bsize):
    n = raw.shape[0]
    blk = raw.reshape(n, -1, bsize)
    d = blk[:, :, :2].copy().view(np.float16)[..., 0]
    off = 2
    m = None
    if bsize == 20:
        m = blk[:, :, 2:4].copy().view(np.float16)[..., 0]
        off = 4
    qs = blk[:, :, off:]
    q = np.concatenate([qs & 15, qs >> 4], axis=2).astype(np.int32)
    return d, m, q


def ref_dequant(raw, wtype, k):
    n = raw.shape[0]
    if wtype == nat.Q8_0:
        d, q = unpack_q8_0(raw, k)
        v = d.astype(np.float32)[..., None] * q.astype(np.float32)
    elif wtype == nat.Q4_0:
        d, _, q = unpack_q4(raw, k, 18)
        v = d.astype(np.float32)[..., None] * (q - 8).astype(np.float32)
    else:
        d, m, q = unpack_q4(raw, k, 20)
        v = d.astype(np.float32)[..., None] * q.astype(np.float32) + m.astype(np.float32)[..., None]
    return v.reshape(n, -1)[:, :k]


BLOCK_BYTES = {nat.Q8_0: 34, nat.Q4_0: 18, nat.Q4_1: 20}


# ---- row sizes and types -------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 32, 33, 172, 576])
def test_row_size(k):
    nb = -(-k // 32)
    assert nat.row_size(nat.F32, k) == 4 * k
    assert nat.row_size(nat.F16, k) == 2 * k
    assert nat.row_size(nat.BF16, k) == 2 * k
    for t, b in BLOCK_BYTES.items():
        assert nat.row_size(t, k) == nb * b


def test_unknown_type():
    from slmkit._native import lib
    assert lib.slm_row_size(7, 32) == 0
    x = np.ones((1, 32), np.float32)
    out = np.zeros(1024, np.uint8)
    assert lib.slm_quantize(7, nat.ffi.cast("float *", x.ctypes.data),
                            nat.ffi.cast("void *", out.ctypes.data), 1, 32) == lib.SLM_E_TYPE
    assert lib.slm_matmul(nat.ffi.NULL, 7, nat.ffi.cast("void *", out.ctypes.data),
                          nat.ffi.cast("float *", x.ctypes.data),
                          nat.ffi.cast("float *", out.ctypes.data), 1, 1, 32) == lib.SLM_E_TYPE


# ---- quantisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [32, 33, 172, 576])
def test_q8_0_quantize_bit_exact(k):
    rng = np.random.default_rng(k)
    x = rand(rng, 13, k, scale=3.0)
    raw = nat.quantize(x, nat.Q8_0)
    d, q = unpack_q8_0(raw, k)
    rd, rq = ref_quant_q8_0(x)
    np.testing.assert_array_equal(d.view(np.uint16), rd.view(np.uint16))
    np.testing.assert_array_equal(q, rq)


@pytest.mark.parametrize("wtype", QTYPES)
@pytest.mark.parametrize("k", [32, 33, 172, 576, 1536])
def test_dequantize_matches_numpy_formula(wtype, k):
    rng = np.random.default_rng(100 + k)
    x = rand(rng, 9, k)
    raw = nat.quantize(x, wtype)
    assert raw.shape == (9, nat.row_size(wtype, k))
    got = nat.dequantize(raw, wtype, k)
    ref = ref_dequant(raw, wtype, k)
    if wtype == nat.Q4_1:   # d*q + m may be fused (1 ulp)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    else:                   # d*q is exact in float32
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("wtype", QTYPES)
@pytest.mark.parametrize("k", [32, 33, 172, 576])
def test_roundtrip_error_bounds(wtype, k):
    rng = np.random.default_rng(200 + k)
    x = rand(rng, 11, k, scale=2.0)
    raw = nat.quantize(x, wtype)
    back = nat.dequantize(raw, wtype, k).astype(np.float64)
    err = np.abs(pad32(back) - pad32(x)).max(axis=2)           # [n, nb] per block
    b = pad32(x).astype(np.float64)
    if wtype == nat.Q8_0:
        d = unpack_q8_0(raw, k)[0].astype(np.float64)
        bound = d / 2 + np.abs(b).max(axis=2) * 2e-3           # + fp16 rounding of d
    elif wtype == nat.Q4_0:
        d = np.abs(unpack_q4(raw, k, 18)[0].astype(np.float64))
        bound = d / 2 + d * 1e-2                               # top value clamps to 15: d/2 + eps
        bound = np.maximum(bound, d)                           # the clamped +8*d side: <= d
    else:
        d, m, _ = unpack_q4(raw, k, 20)
        d = d.astype(np.float64)
        bound = d / 2 + (b.max(axis=2) - b.min(axis=2)) * 2e-3 + np.abs(b).max(axis=2) * 1e-3
    assert np.all(err <= bound + 1e-7), (err - bound).max()
    # and a global relative check on the whole matrix
    rel = np.linalg.norm(back - x) / np.linalg.norm(x)
    assert rel < {nat.Q8_0: 0.01, nat.Q4_0: 0.15, nat.Q4_1: 0.12}[wtype], rel


def test_zero_padded_tail():
    # the tail of the last block is quantised as if it were zero
    rng = np.random.default_rng(3)
    x = rand(rng, 2, 40)
    for t in QTYPES:
        raw = nat.quantize(x, t)
        full = np.zeros((2, 64), np.float32)
        full[:, :40] = x
        np.testing.assert_array_equal(raw, nat.quantize(full, t))


@pytest.mark.parametrize("wtype", [nat.F16, nat.BF16])
def test_half_types_round_to_nearest_even(wtype):
    rng = np.random.default_rng(5)
    x = rand(rng, 4, 100)
    x[0, :6] = [65519.0, 65520.0, 1e-8, -3e-8, 6.1e-5, 1e-7]   # f16 edge cases: max, inf, subnormals
    raw = nat.quantize(x, wtype)
    if wtype == nat.F16:
        with np.errstate(over="ignore"):
            x16 = x.astype(np.float16)
        np.testing.assert_array_equal(raw.view(np.uint16), x16.view(np.uint16))
        np.testing.assert_array_equal(nat.dequantize(raw, wtype, 100), x16.astype(np.float32))
    else:
        u = x.view(np.uint32).astype(np.uint64)
        ref = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        np.testing.assert_array_equal(raw.view(np.uint16), ref)
        back = nat.dequantize(raw, wtype, 100)
        np.testing.assert_array_equal(back.view(np.uint32), ref.astype(np.uint32) << 16)


def test_f16_all_values_roundtrip():
    # every finite fp16 bit pattern converts to float32 and back exactly
    h = np.arange(0, 65536, dtype=np.uint32).astype(np.uint16)
    h = h[np.isfinite(h.view(np.float16))]
    f = h.view(np.float16).astype(np.float32)[None, :]
    raw = nat.quantize(f, nat.F16)
    np.testing.assert_array_equal(raw.view(np.uint16)[0], h)
    np.testing.assert_array_equal(nat.dequantize(raw, nat.F16, f.shape[1]), f)


# ---- matmul ------------------------------------------------------------------------------------

def weights(rng, wtype, n, k):
    w = rand(rng, n, k, scale=0.05)
    raw = nat.quantize(w, wtype)
    return raw, nat.dequantize(raw, wtype, k).astype(np.float64)


REL_TOL = {nat.F32: 1e-5, nat.F16: 1e-5, nat.BF16: 1e-5, nat.Q8_0: 2e-4, nat.Q4_0: 2e-4, nat.Q4_1: 2e-4}


def rel_err(got, ref):
    return np.linalg.norm(got - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", ALL_TYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("k", [32, 33, 64, 172, 576, 1536])
@pytest.mark.parametrize("n,m", [(1, 1), (7, 3), (64, 17), (577, 1), (64, 64), (7, 64)])
def test_matmul_vs_float64(variant, wtype, k, n, m, kernel):
    nat.set_kernel(variant)
    rng = np.random.default_rng(k * 1000 + n * 10 + m)
    raw, wd = weights(rng, wtype, n, k)
    x = rand(rng, m, k)
    y = nat.matmul(x, raw, wtype, n, k)
    assert y.shape == (m, n) and y.dtype == np.float32
    ref = x.astype(np.float64) @ wd.T
    err = rel_err(y, ref)
    # a handful of outputs average less of the activation rounding noise away
    tol = REL_TOL[wtype] * (3 if wtype in QTYPES and m * n < 32 else 1)
    assert err < tol, err
    if wtype in QTYPES:
        # per element too: activation rounding error is bounded per block by amax/65534
        xb = np.abs(pad32(x)).max(axis=2).astype(np.float64)         # [m, nb]
        wb = np.abs(pad32(wd.astype(np.float32))).sum(axis=2)        # [n, nb]
        bound = xb @ wb.T / 65534 * 1.01 + 1e-5 * np.abs(ref).max()
        assert np.all(np.abs(y - ref) <= bound)


@pytest.mark.skipif(len(VARIANTS) < 2, reason="no SIMD variant on this CPU")
@pytest.mark.parametrize("wtype", ALL_TYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("k", [32, 33, 64, 172, 576, 1536])
@pytest.mark.parametrize("n,m", [(1, 1), (7, 3), (64, 17), (577, 1), (577, 64), (9, 5)])
def test_simd_matches_generic(wtype, k, n, m, kernel):
    rng = np.random.default_rng(7 * k + n + m)
    raw, _ = weights(rng, wtype, n, k)
    x = rand(rng, m, k)
    nat.set_kernel("generic")
    ref = nat.matmul(x, raw, wtype, n, k).astype(np.float64)
    for v in VARIANTS[1:]:
        nat.set_kernel(v)
        y = nat.matmul(x, raw, wtype, n, k)
        scale = np.abs(ref).max()
        assert np.abs(y - ref).max() <= 1e-5 * scale, (v, np.abs(y - ref).max() / scale)


# ---- repacked weights (8 rows interleaved per block, csrc/blocks.h) ---------------------------

@pytest.mark.parametrize("wtype", QTYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("n", [1, 7, 8, 13, 64])
@pytest.mark.parametrize("k", [32, 33, 172, 576])
def test_repack_keeps_every_value(wtype, n, k):
    rng = np.random.default_rng(n * 100 + k)
    raw, _ = weights(rng, wtype, n, k)
    packed, rtype = nat.repack(raw, wtype, n, k)
    assert packed.shape == (-(-n // 8) * 8, nat.row_size(wtype, k)) and rtype != wtype
    np.testing.assert_array_equal(nat.dequantize(packed, rtype, k, n), nat.dequantize(raw, wtype, k))
    # the bytes really moved: a repacked group is not the rows side by side (n >= 8 for a full group)
    if n >= 8:
        assert not np.array_equal(packed[:8], raw[:8])


def test_repack_rejects_other_types():
    with pytest.raises(nat.NativeError, match="no repacked layout"):
        nat.repack(np.zeros((8, 64), np.uint8), nat.F16, 8, 32)


@pytest.mark.parametrize("wtype", QTYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("k", [32, 33, 172, 576, 1536])
@pytest.mark.parametrize("n,m", [(1, 1), (8, 1), (13, 3), (64, 17), (577, 1), (577, 64), (200, 7)])
def test_repacked_matmul_matches_stored_layout(wtype, k, n, m, kernel):
    """The generic kernel on repacked weights gives the stored layout's bits; every SIMD variant
    stays within 1e-5 of it (other summation order), for decode and prefill shapes."""
    rng = np.random.default_rng(3 * k + n + m)
    raw, wd = weights(rng, wtype, n, k)
    packed, rtype = nat.repack(raw, wtype, n, k)
    x = rand(rng, m, k)
    nat.set_kernel("generic")
    ref = nat.matmul(x, raw, wtype, n, k)
    np.testing.assert_array_equal(nat.matmul(x, packed, rtype, n, k), ref)
    scale = np.abs(ref).max()
    for v in VARIANTS[1:]:
        nat.set_kernel(v)
        y = nat.matmul(x, packed, rtype, n, k, pool=nat.Pool(3))
        assert np.abs(y - ref).max() <= 1e-5 * scale, (v, np.abs(y - ref).max() / scale)
    assert rel_err(y if len(VARIANTS) > 1 else ref, x.astype(np.float64) @ wd.T) < REL_TOL[wtype] * 3


def test_repacked_matmul_checks_the_size():
    raw = nat.quantize(np.ones((13, 64), np.float32), nat.Q4_0)
    packed, rtype = nat.repack(raw, nat.Q4_0, 13, 64)
    with pytest.raises(ValueError, match="needs"):
        nat.matmul(np.ones((1, 64), np.float32), packed[:13], rtype, 13, 64)


@pytest.mark.parametrize("wtype", ALL_TYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("n,m,k", [(577, 1, 576), (64, 64, 172), (7, 130, 64), (1536, 3, 576)])
def test_threads_identical(wtype, n, m, k):
    rng = np.random.default_rng(n + m + k)
    raw, _ = weights(rng, wtype, n, k)
    x = rand(rng, m, k)
    y1 = nat.matmul(x, raw, wtype, n, k, pool=nat.Pool(1))
    for t in (2, 3, 4, 7):
        yt = nat.matmul(x, raw, wtype, n, k, pool=nat.Pool(t))
        np.testing.assert_array_equal(yt, y1)


def test_pool_many_calls():
    # parallel_for is called thousands of times per second during decode
    rng = np.random.default_rng(11)
    raw, _ = weights(rng, nat.Q4_0, 64, 64)
    x = rand(rng, 1, 64)
    pool = nat.Pool(3)
    ref = nat.matmul(x, raw, nat.Q4_0, 64, 64)
    out = np.empty((1, 64), np.float32)
    for _ in range(3000):
        nat.matmul(x, raw, nat.Q4_0, 64, 64, pool=pool, out=out)
    np.testing.assert_array_equal(out, ref)


def test_physical_cores():
    import os
    c = nat.physical_cores()
    assert 1 <= c <= (os.cpu_count() or c)


def test_kernel_selection(kernel):
    assert nat.kernel_name() in ("generic", "avx2", "avx512vnni")
    nat.set_kernel("generic")
    assert nat.kernel_name() == "generic"
    with pytest.raises(ValueError):
        nat.set_kernel("no-such-kernel")
    assert nat.kernel_name() == "generic"
    nat.set_kernel(" Generic\t\n")                   # SLMKIT_KERNEL=GENERIC works too
    assert nat.kernel_name() == "generic"
    for bad in ("generic x", "gen", "generic" + " " * 40 + "x"):
        with pytest.raises(ValueError):
            nat.set_kernel(bad)


def test_bad_inputs():
    rng = np.random.default_rng(1)
    raw, _ = weights(rng, nat.Q8_0, 8, 64)
    x = rand(rng, 2, 64)
    with pytest.raises(ValueError):
        nat.matmul(x, raw[:, :-1].copy(), nat.Q8_0, 8, 64)       # wrong byte count
    with pytest.raises(ValueError):
        nat.matmul(x, raw, nat.Q8_0, 9, 64)                      # n does not match the bytes
    with pytest.raises(ValueError):
        nat.matmul(rand(rng, 2, 63), raw, nat.Q8_0, 8, 64)       # k mismatch
    with pytest.raises(ValueError):
        nat.dequantize(raw.ravel()[:-3], nat.Q8_0, 64)           # wrong byte count
    with pytest.raises(ValueError):
        nat.quantize(x, "q5_k")                                  # unknown type name


# ---- int16 activation blocks ------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", QTYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("k,n,m", [(576, 256, 1), (576, 256, 8), (172, 64, 5), (1536, 96, 3)])
def test_outlier_channels_keep_small_values(variant, wtype, k, n, m, kernel):
    """Activations with a few channels 200x larger than the rest (as in SmolLM2): int8 blocks
    give ~1.2e-2 relative error here; the int16 blocks (x ~ d*q, d = amax/32767) must stay below
    2e-4, and every output within the per-block bound of the rounding step."""
    nat.set_kernel(variant)
    rng = np.random.default_rng(k + n + m)
    raw, wd = weights(rng, wtype, n, k)
    x = rand(rng, m, k)
    x[:, [7, k // 3, k - 5]] *= 200.0
    y = nat.matmul(x, raw, wtype, n, k)
    xd = x.astype(np.float64)
    ref = xd @ wd.T
    assert rel_err(y, ref) < 2e-4, rel_err(y, ref)
    # step d = amax/32767 per block; rounding error <= d/2 per value, plus float32 sums
    xb = np.abs(pad32(x)).max(axis=2).astype(np.float64)             # [m, nb]
    wb = np.abs(pad32(wd.astype(np.float32))).sum(axis=2)            # [n, nb]
    bound = xb @ wb.T / (32767 * 2) * 1.01 + 2e-6 * (np.abs(xd) @ np.abs(wd).T)
    assert np.all(np.abs(y - ref) <= bound), (np.abs(y - ref) / bound).max()


# ---- int8 activation blocks (act_bits=8, repacked weights) -------------------------------------

def act8_bound(x, wd):
    """Per output: x ~ d8*q8 rounds each value by at most amax/254 of its block (q8 is made from
    the int16 block, itself within amax/65534), plus float32 sums."""
    xb = np.abs(pad32(x)).max(axis=2).astype(np.float64)             # [m, nb]
    wb = np.abs(pad32(wd.astype(np.float32))).sum(axis=2)            # [n, nb]
    xd = x.astype(np.float64)
    return xb @ wb.T * (1 / 254 + 1 / 65534) * 1.01 + 2e-6 * (np.abs(xd) @ np.abs(wd).T)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", QTYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("k", [32, 33, 172, 576, 1536])
@pytest.mark.parametrize("n,m", [(8, 1), (13, 7), (64, 17), (577, 64), (200, 6)])
def test_act8_matmul_vs_float64(variant, wtype, k, n, m, kernel):
    """Every output within the int8 rounding bound of float64 (a value dotted with the wrong
    weight, e.g. a wrong byte order in the blocks, breaks it at once), on activations with
    outlier channels; and the int8 path really runs: it is further from float64 than int16."""
    nat.set_kernel(variant)
    rng = np.random.default_rng(k * 7 + n + m)
    raw, wd = weights(rng, wtype, n, k)
    packed, rtype = nat.repack(raw, wtype, n, k)
    x = rand(rng, m, k)
    x[:, [1, k // 2]] *= 20.0
    y8 = nat.matmul(x, packed, rtype, n, k, pool=nat.Pool(2), act_bits=8)
    ref = x.astype(np.float64) @ wd.T
    assert np.all(np.abs(y8 - ref) <= act8_bound(x, wd)), (np.abs(y8 - ref) / act8_bound(x, wd)).max()
    y16 = nat.matmul(x, packed, rtype, n, k)
    assert rel_err(y16, ref) < rel_err(y8, ref) < 0.05


@pytest.mark.skipif(len(VARIANTS) < 2, reason="no SIMD variant on this CPU")
@pytest.mark.parametrize("wtype", QTYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("k,n,m", [(33, 13, 9), (576, 577, 64), (1536, 96, 13), (172, 40, 1)])
def test_act8_simd_matches_generic(wtype, k, n, m, kernel):
    """Same int8 blocks in every variant (one quantisation unit apart would show at ~1e-3), the
    sums in another order only."""
    rng = np.random.default_rng(k + n * 3 + m)
    raw, _ = weights(rng, wtype, n, k)
    packed, rtype = nat.repack(raw, wtype, n, k)
    x = rand(rng, m, k)
    nat.set_kernel("generic")
    ref = nat.matmul(x, packed, rtype, n, k, act_bits=8).astype(np.float64)
    for v in VARIANTS[1:]:
        nat.set_kernel(v)
        for threads in (1, 3):
            y = nat.matmul(x, packed, rtype, n, k, pool=nat.Pool(threads), act_bits=8)
            assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max(), v


@pytest.mark.parametrize("variant", VARIANTS)
def test_act8_q8_0_extreme_weights(variant, kernel):
    """Q8_0 bytes -128 and 127 (GGUF allows -128; ggml writes -127..127) against activations at
    +-127: exact integer dots in every variant (VNNI biases the weights by +128, AVX2 moves
    their sign onto the activations: either slip shows as a wrong sum or an int16 saturation)."""
    nat.set_kernel(variant)
    n, k, m = 16, 96, 9
    rng = np.random.default_rng(5)
    raw, _ = weights(rng, nat.Q8_0, n, k)
    blk = raw.reshape(n, -1, 34)
    q = blk[:, :, 2:].view(np.int8)
    q[:8] = -128                                   # first group: all -128, then all 127
    q[8:] = 127
    q[3, 1, :16] = 127                             # mixed signs within a block
    blk[:, :, :2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    wd = nat.dequantize(raw, nat.Q8_0, k).astype(np.float64)
    assert wd.min() == np.float64(np.float16(0.01)) * -128
    packed, rtype = nat.repack(raw, nat.Q8_0, n, k)
    x = np.where(rng.random((m, k)) < 0.5, -1.0, 1.0).astype(np.float32)   # q8 = +-127
    y8 = nat.matmul(x, packed, rtype, n, k, act_bits=8)
    np.testing.assert_allclose(y8, x.astype(np.float64) @ wd.T, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", [nat.Q4_0, nat.Q4_1], ids=lambda t: nat.TYPE_NAMES[t])
def test_act8_q4_largest_sums(variant, wtype, kernel):
    """Q4 nibbles all 15 (and all 0, and mixed) against whole blocks of activations at +127 or
    -127: the largest sums a block can reach, exact in every variant (AVX2 adds a block's
    maddubs pairs in int16 lanes before widening them: an overflow there shows as a wrong sign
    or magnitude)."""
    nat.set_kernel(variant)
    n, k, m = 24, 128, 7
    rng = np.random.default_rng(8)
    raw, _ = weights(rng, wtype, n, k)
    bs = nat.row_size(wtype, k) // (k // 32)
    blk = raw.reshape(n, -1, bs)
    qs = blk[:, :, bs - 16:]
    qs[:8] = 0xFF                                  # first group: nibbles 15
    qs[8:16] = 0x00                                # second: nibbles 0
    qs[16:] = 0xF0                                 # third: 0 and 15 within each byte
    blk[:, :, :2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    wd = nat.dequantize(raw, wtype, k).astype(np.float64)
    packed, rtype = nat.repack(raw, wtype, n, k)
    x = np.repeat(np.where(rng.random((m, k // 32)) < 0.5, -1.0, 1.0), 32, axis=1)
    x[0], x[1] = 1.0, -1.0                         # whole rows of one sign: q8 = +-127
    x = x.astype(np.float32)
    y8 = nat.matmul(x, packed, rtype, n, k, act_bits=8)
    np.testing.assert_allclose(y8, x.astype(np.float64) @ wd.T, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("wtype", QTYPES, ids=lambda t: nat.TYPE_NAMES[t])
def test_nonfinite_activations_give_nan_rows(variant, wtype, kernel):
    """A NaN or inf in a row of x makes that row's outputs NaN (as float arithmetic would; the
    forward pass's non-finite check relies on it), for weights as stored and repacked, int16 and
    int8 activation blocks; a row too small to quantise (|x| < ~3.9e-34) gives zeros; other rows
    are untouched."""
    nat.set_kernel(variant)
    n, k, m = 16, 96, 10
    rng = np.random.default_rng(11)
    raw, _ = weights(rng, wtype, n, k)
    packed, rtype = nat.repack(raw, wtype, n, k)
    x = rand(rng, m, k)
    clean = x.copy()
    x[1, 40], x[4, 95], x[6, 0] = np.nan, np.inf, -np.inf
    x[8] = 0.0
    x[8, 7] = 1e-35                                # a block scale below FLT_MIN
    bad = [1, 4, 6]
    for w, t, bits in ((raw, wtype, 16), (packed, rtype, 16), (packed, rtype, 8)):
        y = nat.matmul(x, w, t, n, k, act_bits=bits)
        assert np.isnan(y[bad]).all(), (nat.TYPE_NAMES[t], bits)
        assert (y[8] == 0).all(), (nat.TYPE_NAMES[t], bits)
        good = [i for i in range(m) if i not in bad + [8]]
        ref = nat.matmul(clean, w, t, n, k, act_bits=bits)
        np.testing.assert_array_equal(y[good], ref[good])


@pytest.mark.skipif(len(VARIANTS) < 2, reason="no SIMD variant on this CPU")
@pytest.mark.parametrize("k", [40, 600, 1536])
def test_activation_blocks_bit_identical_in_every_variant(k, kernel):
    """Identity Q8_0 weights read each activation value back as quantised (d * q, exact):
    every variant's int16 and int8 blocks equal the generic ones bit for bit (blocks of 8 at a
    time in the SIMD code, tails, zero blocks, outliers and tiny values included)."""
    rng = np.random.default_rng(k)
    raw = np.zeros((k, nat.row_size(nat.Q8_0, k)), np.uint8)
    blk = raw.reshape(k, -1, 34)
    one = np.frombuffer(np.float16(1.0).tobytes(), np.uint8)
    for j in range(k):
        blk[j, j // 32, :2] = one
        blk[j, j // 32, 2 + j % 32] = 1
    packed, rtype = nat.repack(raw, nat.Q8_0, k, k)
    x = rand(rng, 21, k)
    x[:, 5] *= 1000.0
    x[3, :64] = 0.0
    x[4] *= 1e-30
    for bits in (16, 8):
        nat.set_kernel("generic")
        ref = nat.matmul(x, packed, rtype, k, k, act_bits=bits)
        assert rel_err(ref, x) < (1e-4 if bits == 16 else 3e-2)     # it is x, quantised
        for v in VARIANTS[1:]:
            nat.set_kernel(v)
            np.testing.assert_array_equal(nat.matmul(x, packed, rtype, k, k, act_bits=bits), ref)


def test_act8_only_for_repacked_weights():
    """The errors name the problem (the C call's own, "unsupported weight type", did not)."""
    rng = np.random.default_rng(2)
    x = rand(rng, 9, 64)
    for wtype in (nat.Q8_0, nat.Q4_0, nat.F32):
        raw, _ = weights(rng, wtype, 8, 64)
        with pytest.raises(ValueError, match=r"act_bits=8\) need repacked weights"):
            nat.matmul(x, raw, wtype, 8, 64, act_bits=8)
    raw, _ = weights(rng, nat.Q4_0, 8, 64)
    packed, rtype = nat.repack(raw, nat.Q4_0, 8, 64)
    with pytest.raises(ValueError, match="act_bits must be 16 or 8, not 12"):
        nat.matmul(x, packed, rtype, 8, 64, act_bits=12)
