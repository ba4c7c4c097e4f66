"""The whole forward pass in C (csrc/llama.c, used by the cpu backend) against the same model run
op by op through the cpu backend's kernels, and against the numpy float64 backend.

The compiled pass calls the kernels the op-by-op path calls, but in other shapes (blocks of rows
for attention and many-row gemms), so the two agree to float32 rounding of sums taken in other
orders; float64 numpy differs by that and the int16 activation rounding.
"""
import threading

import numpy as np
import pytest

from slmkit import _native as nat
from slmkit.loading import model_from_checkpoint
from utils import kernel_variants, random_checkpoint

VARIANTS = kernel_variants()
BEST = VARIANTS[-1]

CONFIGS = {
    "llama-gqa": dict(),
    "tied-mha": dict(tie_word_embeddings=True, num_key_value_heads=4),
    "qwen2-bias": dict(architecture="Qwen2ForCausalLM", attention_bias=True),
    "interleaved-rope": dict(rope_interleaved=True),
    "odd-widths": dict(hidden_size=40, num_attention_heads=4, num_key_value_heads=1,
                       intermediate_size=100),
}
WTYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"]


@pytest.fixture(autouse=True)
def best_kernel():
    yield
    nat.set_kernel(BEST)


def models(wtype, config, threads=2, seed=0):
    """(compiled cpu model, op-by-op cpu model, numpy model) on one random checkpoint."""
    ckpt = random_checkpoint(seed=seed, wtype=wtype, **CONFIGS[config])
    fast = model_from_checkpoint(ckpt, "cpu", threads)
    slow = model_from_checkpoint(ckpt, "cpu", threads)
    slow.arch.compiled = None
    ref = model_from_checkpoint(ckpt, "numpy")
    assert fast.arch.compiled is not None
    return fast, slow, ref


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def run(model, ids, steps):
    """All logits of a prefill of ids, then the logits of each decode step."""
    cache = model.arch.new_cache(64)
    out = [model.arch.forward(ids, cache, all_logits=True)]
    out += [model.arch.forward([t], cache)[None] for t in steps]
    return np.concatenate(out)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("wtype", WTYPES)
def test_compiled_equals_op_by_op_and_float64(wtype, config, variant):
    nat.set_kernel(variant)
    fast, slow, ref = models(wtype, config)
    rng = np.random.default_rng(1)
    ids, steps = rng.integers(3, 259, 9), rng.integers(3, 259, 4)
    a, b, c = run(fast, ids, steps), run(slow, ids, steps), run(ref, ids, steps)
    assert a.shape == (len(ids) + len(steps), 259)
    assert rel(a, b) < 1e-4, rel(a, b)
    assert rel(a, c) < (2e-6 if wtype == "f32" else 2e-4), rel(a, c)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("wtype", ["q8_0", "q4_0", "q4_1"])
def test_repacked_weights_equal_stored_layout(wtype, config, monkeypatch):
    """The compiled pass repacks quantised weights at load (8-row groups); SLMKIT_REPACK=0 runs
    them as stored. Same integer dots, float sums in another order (decode), carried through
    the layers: float32 rounding apart, as the compiled and op-by-op passes are."""
    fast = models(wtype, config)[0]
    monkeypatch.setenv("SLMKIT_REPACK", "Off")
    stored = models(wtype, config)[0]
    assert fast.arch.compiled.repacked > 0 and stored.arch.compiled.repacked == 0
    rng = np.random.default_rng(2)
    ids, steps = rng.integers(3, 259, 11), rng.integers(3, 259, 3)
    a, b = run(fast, ids, steps), run(stored, ids, steps)
    assert rel(a, b) < 1e-4, rel(a, b)


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("m", [1, 2, 3, 70, 125])
def test_rows_and_threads(m, threads):
    """Inputs made per thread (m <= 2) and split across threads (m > 2); activation-row blocks
    of 64 (m = 70, 125); every thread count gives the same numbers."""
    fast, _, ref = models("q4_0", "llama-gqa", threads=threads, seed=m)
    ckpt_ids = np.random.default_rng(m).integers(3, 259, m + 2)
    cache = fast.arch.new_cache(160)
    fast.arch.forward(ckpt_ids[:2], cache)
    got = fast.arch.forward(ckpt_ids[2:], cache, all_logits=True)       # m rows at position 2
    want = ref.logits(ckpt_ids)[2:]
    assert got.shape == (m, 259)
    assert rel(got, want) < 2e-4, rel(got, want)
    one = models("q4_0", "llama-gqa", threads=1, seed=m)[0]
    c1 = one.arch.new_cache(160)
    one.arch.forward(ckpt_ids[:2], c1)
    assert np.array_equal(one.arch.forward(ckpt_ids[2:], c1, all_logits=True), got)


def test_decode_equals_prefill_and_cache_copies_branch():
    fast, _, _ = models("q8_0", "qwen2-bias")
    ids = np.random.default_rng(4).integers(3, 259, 20)
    full = fast.logits(ids)
    cache = fast.arch.new_cache(32)
    steps = [fast.arch.forward(ids[:5], cache)]
    steps += [fast.arch.forward([t], cache) for t in ids[5:12]]
    branch = cache.copy()
    steps += [fast.arch.forward([t], cache) for t in ids[12:]]
    assert rel(np.stack(steps), full[4:]) < 1e-4     # decode and prefill kernels sum in other orders
    # the copy continues on its own arrays: same result from the same point
    again = [fast.arch.forward([t], branch) for t in ids[12:]]
    assert rel(np.stack(again), full[12:]) < 1e-4


def test_errors_are_clear():
    fast, _, _ = models("q4_0", "llama-gqa")
    cache = fast.arch.new_cache(8)
    with pytest.raises(ValueError, match="context overflow"):
        fast.arch.forward(np.arange(3, 12), cache)
    with pytest.raises(ValueError, match="out of range"):
        fast.arch.forward([3, 400], cache)
    with pytest.raises(ValueError, match="no token"):
        fast.arch.forward([], cache)
    assert cache.pos == 0                      # nothing was fed


def test_two_python_threads_share_one_model():
    fast, _, ref = models("q4_1", "llama-gqa")
    seqs = [np.random.default_rng(s).integers(3, 259, 12) for s in range(4)]
    want = [ref.logits(s) for s in seqs]
    got = [None] * 4

    def work(i):
        for _ in range(5):
            got[i] = fast.logits(seqs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        assert rel(g, w) < 2e-4


# ---- int8 KV cache ---------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["llama-gqa", "qwen2-bias", "interleaved-rope"])
def test_int8_kv_cache_close_to_f32_and_same_on_every_kernel(config):
    ckpt = random_checkpoint(seed=3, wtype="q8_0", **CONFIGS[config])
    ids = np.random.default_rng(5).integers(3, 259, 40)
    f32 = model_from_checkpoint(ckpt, "cpu", 2).logits(ids)
    got = {}
    for variant in VARIANTS:
        nat.set_kernel(variant)
        model = model_from_checkpoint(ckpt, "cpu", 2, kv_cache="int8")
        got[variant] = model.logits(ids)
        # decode steps over the int8 cache agree with the prefill
        cache = model.arch.new_cache(64)
        model.arch.forward(ids[:30], cache)
        steps = np.stack([model.arch.forward([t], cache) for t in ids[30:]])
        assert rel(steps, got[variant][30:]) < 1e-4
    assert rel(got["generic"], f32) < 0.05, rel(got["generic"], f32)    # int8 rows: ~1% here
    assert rel(got[VARIANTS[-1]], got["generic"]) < 2e-4   # a rounding step may flip


def test_int8_kv_cache_needs_the_compiled_pass():
    ckpt = random_checkpoint(seed=3)
    with pytest.raises(ValueError, match="numpy backend has no 'int8'|backend has f32"):
        model_from_checkpoint(ckpt, "numpy", kv_cache="int8")
    with pytest.raises(ValueError, match="kv_cache='fp8'"):
        model_from_checkpoint(ckpt, "cpu", kv_cache="fp8")


def test_int8_kv_cache_quality_on_stories260k(stories_hf, tinystories_text):
    """The cost of the int8 cache on a real model and real text, against the f32 cache."""
    import slmkit
    from slmkit.evaluate import evaluate
    base, int8 = slmkit.load(stories_hf, threads=2), slmkit.load(stories_hf, threads=2, kv_cache="int8")
    r = evaluate(int8, tinystories_text[:20000], base=base, ctx=256, max_tokens=2000)
    print(f"int8 KV cache vs f32 on stories260K: {r}")
    assert r.kl_mean < 0.005 and r.top1 >= 0.97


# ---- int8 prefill activations ----------------------------------------------------------------

@pytest.mark.parametrize("config", ["llama-gqa", "qwen2-bias", "odd-widths"])
@pytest.mark.parametrize("wtype", ["q4_0", "q4_1", "q8_0"])
def test_int8_prefill_close_to_float64_and_same_on_every_kernel(wtype, config):
    """The int8 blocks are read by the repacked kernels (the SIMD variants; the kernels
    themselves are checked against the generic reference in test_kernels_matmul.py). The generic
    variant runs weights as stored, where the option changes nothing."""
    ckpt = random_checkpoint(seed=4, wtype=wtype, **CONFIGS[config])
    ids = np.random.default_rng(6).integers(3, 259, 40)
    ref = model_from_checkpoint(ckpt, "numpy").logits(ids)
    got = {}
    for variant in VARIANTS:
        nat.set_kernel(variant)
        int16 = model_from_checkpoint(ckpt, "cpu", 2)
        if variant == "generic":
            with pytest.warns(UserWarning, match="prefill_act='int8' changes nothing"):
                model = model_from_checkpoint(ckpt, "cpu", 2, prefill_act="int8")
        else:
            model = model_from_checkpoint(ckpt, "cpu", 2, prefill_act="int8")
        assert model.arch.prefill_act_in_effect == ("int16" if variant == "generic" else "int8")
        got[variant] = model.logits(ids)
        # a prompt under 8 tokens, and so every decode step, keeps int16 activations
        np.testing.assert_array_equal(model.logits(ids[:5]), int16.logits(ids[:5]))
        # the output head too: the last logits of a prompt do not depend on how many
        # positions' logits were asked for (generation asks for the last one only)
        last = model.arch.forward(ids, model.arch.new_cache(64))
        np.testing.assert_array_equal(got[variant][-1], last)
        err8, err16 = rel(got[variant], ref), rel(int16.logits(ids), ref)
        if variant == "generic":
            assert err8 == err16
        else:
            assert 5 * err16 < err8 < 0.05, (variant, err8, err16)   # int8 blocks: ~1% here
    simd = VARIANTS[1:]
    for variant in simd[1:]:
        assert rel(got[variant], got[simd[0]]) < 2e-4, variant


def test_bad_repack_setting_is_refused(monkeypatch):
    monkeypatch.setenv("SLMKIT_REPACK", "maybe")
    with pytest.raises(ValueError, match="SLMKIT_REPACK must be 0 or 1"):
        model_from_checkpoint(random_checkpoint(seed=3, wtype="q4_0"), "cpu")


def test_none_means_the_default_options():
    model = model_from_checkpoint(random_checkpoint(seed=3, wtype="q4_0"), None,
                                  kv_cache=None, prefill_act=None)
    assert model.arch.kv_cache == "f32" and model.arch.prefill_act_in_effect == "int16"
    assert model.backend.name == "cpu"


def test_int8_prefill_needs_the_compiled_pass():
    ckpt = random_checkpoint(seed=3, wtype="q4_0")
    with pytest.raises(ValueError, match="prefill_act='int8' is not available on the numpy backend"):
        model_from_checkpoint(ckpt, "numpy", prefill_act="int8")
    with pytest.raises(ValueError, match="prefill_act='int4'"):
        model_from_checkpoint(ckpt, "cpu", prefill_act="int4")
    with pytest.warns(UserWarning, match="changes nothing for this model"):    # float weights
        assert model_from_checkpoint(random_checkpoint(seed=3), "cpu", prefill_act="int8") \
            .arch.prefill_act_in_effect == "int16"
    model = model_from_checkpoint(ckpt, "cpu", prefill_act="int8")
    with pytest.raises(ValueError, match="int8 prefill activations run only in the compiled"):
        model.arch.forward(np.arange(3, 12), model.arch.new_cache(16), observe=lambda *a: None)
