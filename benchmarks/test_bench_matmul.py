"""Benchmarks of slm_matmul on SmolLM2-135M shapes (pytest-benchmark).

Run:  pytest benchmarks/test_bench_matmul.py --benchmark-enable
Each case records GOPS (2*m*n*k per second) and GB/s (weight bytes streamed per second) in
benchmark.extra_info; numpy float32 on the same shape is the baseline for the ratio.
"""
import numpy as np
import pytest

from slmkit import _native as nat

SHAPES = [(576, 1536), (1536, 576), (576, 576)]     # (k, n): up/gate, down, attention projections
MS = [1, 512]                                       # decode, prefill
TYPES = [nat.Q8_0, nat.Q4_0, nat.Q4_1]
THREADS = sorted({1, 2, max(1, nat.physical_cores())})

_pools = {}


def pool(t):
    if t not in _pools:
        _pools[t] = nat.Pool(t)
    return _pools[t]


def setup(k, n, m, wtype=None, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    raw = nat.quantize(w, wtype) if wtype is not None else w
    return raw, x


def record(benchmark, m, n, k, wbytes):
    s = benchmark.stats.stats.mean if benchmark.stats else None
    if s:
        benchmark.extra_info["GOPS"] = round(2 * m * n * k / s / 1e9, 2)
        benchmark.extra_info["GB/s"] = round(wbytes / s / 1e9, 2)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("wtype", TYPES, ids=lambda t: nat.TYPE_NAMES[t])
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("k,n", SHAPES)
def test_bench_slm_matmul(benchmark, k, n, m, wtype, threads):
    raw, x = setup(k, n, m, wtype)
    out = np.empty((m, n), np.float32)
    p = pool(threads)
    benchmark.group = f"matmul k={k} n={n} m={m}"
    benchmark.extra_info.update(kernel=nat.kernel_name(), threads=threads, type=nat.TYPE_NAMES[wtype])
    benchmark(nat.matmul, x, raw, wtype, n, k, p, out)
    record(benchmark, m, n, k, raw.nbytes)


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("k,n", SHAPES)
def test_bench_numpy_f32(benchmark, k, n, m):
    w, x = setup(k, n, m)
    wt = w.T.copy()
    out = np.empty((m, n), np.float32)
    benchmark.group = f"matmul k={k} n={n} m={m}"
    benchmark.extra_info.update(kernel="numpy-f32")
    benchmark(np.matmul, x, wt, out=out)
    record(benchmark, m, n, k, w.nbytes)
