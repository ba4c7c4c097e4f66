"""Benchmarks of slm_matmul (pytest-benchmark): every weight format x decode (m=1) and prefill
(m=512) on the linear shapes of SmolLM2-135M and Qwen2.5-0.5B (random weights), plus the
machine-limit probes they are judged against. The *_x8 formats are the quantised ones repacked
as the forward pass runs them (8 rows interleaved per block, slm_repack); the plain ones are the
layout of the files (slm_matmul on weights as stored); *_x8_a8 are the repacked weights against
int8 activation blocks (prefill_act="int8"; prefill only).

extra_info of each case: GOPS (2*m*n*k / s), GB/s (weight bytes / s), and the fraction of the
limit that bounds it, measured in the same run: decode (weights cycled through copies larger
than the caches, so they come from memory as in a real decode) against streaming-read bandwidth,
prefill of int8-quantised formats against the int8 dot peak (see benchmarks/README.md).

With benchmarks disabled (the normal test run) each case runs once, on a slice of the shape
(n <= 128 weight rows, m <= 8 rows: same k, same code paths) and checks the result against
numpy float64, so the whole file stays a few-second correctness check.
"""
import numpy as np
import pytest

from bench_utils import THREADS, pool
from slmkit import _native as nat

SHAPES = {   # (k, n) of the linear layers; then q, k, v as one step (shared input), as the
             # forward pass runs them
    "smollm2-135m": [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152), (576, 960)],
    "qwen2.5-0.5b": [(896, 896), (896, 128), (896, 4864), (4864, 896), (896, 1152)],
}
CASES = [(model, k, n) for model, shapes in SHAPES.items() for k, n in shapes]
FORMATS = ["q8_0_x8", "q4_0_x8", "q4_1_x8", "q8_0_x8_a8", "q4_0_x8_a8", "q4_1_x8_a8", "q8_0",
           "q4_0", "q4_1", "f16", "f32"]
QUANT = ("q8_0", "q4_0", "q4_1")
MS = [1, 512]                                            # decode, prefill
REL_TOL = {"q8_0": 2e-3, "q4_0": 2e-3, "q4_1": 2e-3, "f16": 1e-5, "f32": 1e-5}
REL_TOL.update({f"{f}_x8": REL_TOL[f] for f in QUANT})
REL_TOL.update({f"{f}_x8_a8": 3e-2 for f in QUANT})      # int8 activations: ~1% here
COLD_BYTES = 96 << 20                                    # decode weights beyond a 32 MB L3


def make(k, n, m, fmt, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k), dtype=np.float32) * np.float32(0.05)
    x = rng.standard_normal((m, k), dtype=np.float32)
    base = fmt.removesuffix("_a8").removesuffix("_x8")
    raw = nat.quantize(w, base)
    return (nat.repack(raw, base, n, k)[0] if fmt != base else raw), x


def wtype_and_bits(fmt):
    """The matmul's weight type name and activation bits for a format of FORMATS."""
    return fmt.removesuffix("_a8"), 8 if fmt.endswith("_a8") else 16


# int8 activation blocks are for prefill only
FORMAT_M = [(f, m) for f in FORMATS for m in MS if not (f.endswith("_a8") and m == 1)]


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("fmt,m", FORMAT_M, ids=[f"{f}-m{m}" for f, m in FORMAT_M])
@pytest.mark.parametrize("model,k,n", CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}" for c in CASES])
def test_bench_matmul(benchmark, limits, model, k, n, fmt, m, threads):
    wtype, bits = wtype_and_bits(fmt)
    if benchmark.disabled:                   # correctness run: a slice of the shape, once
        n, m = min(n, 128), min(m, 8)
    raw, x = make(k, n, m, fmt)
    out = np.empty((m, n), np.float32)
    benchmark.group = f"matmul {model} k={k} n={n} m={m}"
    benchmark.extra_info.update(kernel=nat.kernel_name(), threads=threads, format=fmt)
    if m == 1 and not benchmark.disabled:
        # decode streams weights from memory: cycle through copies that outgrow the caches, as
        # a real decode step does (a 30-layer model is larger than the L3)
        copies = [raw] + [raw.copy() for _ in range(min(63, COLD_BYTES // raw.nbytes))]
        turn = iter(range(1 << 62))
        benchmark(lambda: nat.matmul(x, copies[next(turn) % len(copies)], wtype, n, k, pool(threads), out))
        raw = copies[0]
        nat.matmul(x, raw, wtype, n, k, pool(threads), out)
    else:
        benchmark(nat.matmul, x, raw, wtype, n, k, pool(threads), out, bits)

    ref = x.astype(np.float64) @ nat.dequantize(raw, wtype, k, n).astype(np.float64).T
    err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert err < REL_TOL[fmt], err
    if benchmark.disabled:
        return
    s = benchmark.stats.stats.median
    gops, gbps = 2 * m * n * k / s / 1e9, raw.nbytes / s / 1e9
    info = benchmark.extra_info
    info.update(GOPS=round(gops, 2), GBps=round(gbps, 2))
    if m == 1:
        info["read_GBps"] = round(limits.read_gbps(threads), 2)
        info["frac_read_bw"] = round(gbps / info["read_GBps"], 3)
    elif wtype.removesuffix("_x8") in QUANT:
        info["int8_GOPS"] = round(limits.int8_gops(threads), 2)
        info["frac_int8_peak"] = round(gops / info["int8_GOPS"], 3)


@pytest.mark.parametrize("threads", THREADS)
def test_bench_probe_read(benchmark, threads):
    """Streaming reads of 256 MB (far above any L3); the decode bound."""
    size = 4 << 20 if benchmark.disabled else 256 << 20
    assert benchmark(nat.probe_read_gbps, pool(threads), size, 1) > 0
    benchmark.extra_info.update(kernel=nat.kernel_name(), threads=threads)


@pytest.mark.parametrize("threads", THREADS)
def test_bench_probe_int8(benchmark, threads):
    """Independent int8 dot steps on every thread (vpdpbusd with VNNI, else maddubs added in
    int16); the prefill bound."""
    iters = 1000 if benchmark.disabled else 2_000_000
    assert benchmark(nat.probe_int8_gops, pool(threads), iters, 1) > 0
    benchmark.extra_info.update(kernel=nat.kernel_name(), threads=threads)
