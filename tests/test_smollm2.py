"""Acceptance on the real SmolLM2-135M-Instruct GGUF (the default catalogue model): chat,
predictive text and perplexity. Skipped, saying why, where the model is not downloaded."""
import os
import time

import pytest

import slmkit
from slmkit.evaluate import evaluate
from utils import shared_path


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return slmkit.load(smollm2_path)


def test_chat_template_comes_from_the_gguf(smollm2):
    ids = smollm2.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True)
    im_start, im_end = smollm2.tokenizer.id_of["<|im_start|>"], smollm2.tokenizer.id_of["<|im_end|>"]
    assert ids[0] == im_start and ids.count(im_start) == 3 and ids.count(im_end) == 2
    assert ids.count(smollm2.tokenizer.bos_id) == 3        # BOS is <|im_start|>: never an extra one
    assert im_end in smollm2.tokenizer.eos_ids


def test_chat_names_paris(smollm2_path):
    """Greedy, with the model's own template (and its default system prompt). On the float64
    reference backend: the first token's top two logits ('The' 25.33, 'L' 25.24) are close
    enough that this checks the chat path, not kernel precision (tests/test_smollm2_precision.py
    compares the C backend with this one)."""
    model = slmkit.load(smollm2_path, backend="numpy")
    reply = model.chat([{"role": "user", "content": "What is the capital of France?"}],
                       temperature=0, max_new_tokens=24)
    print(f"\nSmolLM2 (numpy backend): {reply!r}")
    assert "Paris" in reply and reply.rstrip().endswith(".")


def test_chat_with_a_system_prompt_names_paris(smollm2):
    reply = smollm2.chat([{"role": "system", "content": "You are a helpful assistant."},
                          {"role": "user", "content": "What is the capital of France?"}],
                         temperature=0, max_new_tokens=24)
    print(f"\nSmolLM2 (cpu backend): {reply!r}")
    assert "Paris" in reply


def test_suggest_paris(smollm2):
    start = time.perf_counter()
    found = smollm2.suggest_with_probs("The capital of France is", k=3)
    print(f"\nsuggest: {found} in {time.perf_counter() - start:.2f}s (piece table included)")
    words = [w for w, _ in found]
    assert "Paris" in words and len(words) == 3
    assert all(w and not w.startswith(" ") for w in words)
    assert dict(found)["Paris"] > 0.3
    assert smollm2.suggest("I would like a cup of", k=3)[0] in ("coffee", "tea")


def test_perplexity_wikitext2(smollm2):
    """Perplexity on the first SLMKIT_PPL_TOKENS (default 16384) tokens of wikitext-2 test at
    context 512 (llama.cpp-style windows, second half scored)."""
    text = shared_path("corpora", "wikitext2-test.raw").read_text(encoding="utf-8")
    n = int(os.environ.get("SLMKIT_PPL_TOKENS", 16384))
    ids = smollm2.tokenizer.encode(text[:n * 8], add_bos=False)[:n]   # ~4 characters a token
    assert len(ids) == n
    start = time.perf_counter()
    result = evaluate(smollm2, ids=ids, ctx=512)
    print(f"\nSmolLM2-135M-Instruct Q4_1, wikitext-2 test, {n} tokens, ctx 512: {result} "
          f"({time.perf_counter() - start:.0f}s)")
    assert 15 < result.ppl < 35
