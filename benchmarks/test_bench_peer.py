"""slmkit against llama.cpp on the same GGUF (needs the optional llama-cpp-python package; see
peer_llamacpp.py, which also runs on its own and prints a table).

With benchmarks disabled this checks that the two engines agree: the same greedy tokens on the
8-bit GGUF. With --benchmark-enable it records both engines' medians and the ratios.
"""
import pytest

from bench_utils import THREADS

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (optional)")

import slmkit  # noqa: E402
from peer_llamacpp import LlamaCpp, compare, peer_gguf  # noqa: E402
from slmkit import hub  # noqa: E402


@pytest.fixture(scope="module")
def q8_gguf():
    if hub.find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 GGUF not present: run `slmkit pull smollm2-135m`")
    return peer_gguf("q8_0")


def test_same_greedy_tokens_as_llama_cpp(q8_gguf):
    ours = slmkit.load(q8_gguf, threads=THREADS[-1])
    ids = ours.encode("The capital of France is")
    mine = ours.generate_ids(ids, max_new_tokens=16, temperature=0)
    assert LlamaCpp(q8_gguf, THREADS[-1], 64, 64).greedy(ids, 16) == mine


@pytest.mark.parametrize("fmt", ["q4_0", "q8_0"])
@pytest.mark.parametrize("threads", THREADS)
def test_bench_peer(benchmark, fmt, threads):
    if benchmark.disabled:
        pytest.skip("timing only (--benchmark-enable)")
    if hub.find_smollm2_gguf() is None:
        pytest.skip("SmolLM2 GGUF not present")
    result = benchmark.pedantic(compare, args=(peer_gguf(fmt), threads), rounds=1, iterations=1)
    benchmark.extra_info.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()})
