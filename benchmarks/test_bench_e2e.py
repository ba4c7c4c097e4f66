"""End-to-end speed on the real SmolLM2-135M-Instruct GGUF (pytest-benchmark): load, prefill of
512 tokens, generation of 128 tokens, predictive-text latency, and peak memory.

With benchmarks disabled (the normal test run) every case runs once on a short input and checks
its result: the whole-model C pass against the op-by-op path, and suggest() against the answer
the model knows.
"""
import numpy as np
import pytest

import slmkit
from bench_utils import THREADS
from slmkit import hub
from slmkit.bench import peak_rss_mb, time_generation, time_prefill


@pytest.fixture(scope="module")
def smollm2_file():
    path = hub.find_smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not present: run `slmkit pull smollm2-135m`")
    return path


@pytest.fixture(scope="module")
def models(smollm2_file):
    return {t: slmkit.load(smollm2_file, threads=t) for t in THREADS}


def test_bench_load(benchmark, smollm2_file):
    model = benchmark(slmkit.load, smollm2_file)
    benchmark.extra_info.update(weights_MB=round(sum(t.nbytes for t in model.checkpoint.tensors.values()) / 1e6, 1))
    assert model.config.num_hidden_layers == 30


def _same_as_op_by_op(model, ids, logits):
    compiled, model.arch.compiled = model.arch.compiled, None
    try:
        ref = model.arch.forward(ids, model.arch.new_cache(len(ids)))
    finally:
        model.arch.compiled = compiled
    # the op-by-op pass multiplies the weights as stored, the compiled one repacked (other float
    # sums for a few rows); on SmolLM2 each is ~1e-4 from float64 (tests/test_smollm2_precision.py)
    assert np.linalg.norm(logits - ref) <= 5e-4 * np.linalg.norm(ref)


@pytest.mark.parametrize("threads", THREADS)
def test_bench_prefill_512(benchmark, models, threads):
    model = models[threads]
    n = 16 if benchmark.disabled else 512
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, n)
    benchmark(time_prefill, model, ids)
    if benchmark.disabled:
        _same_as_op_by_op(model, ids, model.arch.forward(ids, model.arch.new_cache(n)))
        return
    benchmark.extra_info.update(threads=threads, tokens_per_s=round(n / benchmark.stats.stats.median, 1))


@pytest.mark.parametrize("threads", THREADS)
def test_bench_generate_128(benchmark, models, threads):
    model = models[threads]
    n = 4 if benchmark.disabled else 128
    benchmark(time_generation, model, n, 42)
    if benchmark.disabled:
        cache = model.arch.new_cache(n)
        for _ in range(n):
            logits = model.arch.forward([42], cache)
        _same_as_op_by_op(model, [42] * n, logits)
        return
    benchmark.extra_info.update(threads=threads, tokens_per_s=round(n / benchmark.stats.stats.median, 1),
                                peak_rss_MB=round(peak_rss_mb()))


def test_bench_suggest(benchmark, models):
    model = models[THREADS[-1]]
    words = benchmark(model.suggest, "The capital of France is", 3)
    assert "Paris" in words
    benchmark.extra_info.update(threads=THREADS[-1], words=words)
