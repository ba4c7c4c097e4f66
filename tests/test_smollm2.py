"""Acceptance on the real SmolLM2-135M-Instruct GGUF (the default catalogue model): chat,
predictive text and perplexity. Skipped, saying why, where the model is not downloaded."""
import os
import time

import pytest

import slmkit
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
    """Perplexity on the first SLMKIT_PPL_TOKENS (default 16384) tokens of wikitext-2 test, cut
    into non-overlapping windows of 512 tokens (a BOS first only where the vocabulary adds one;
    SmolLM2's does not). Two figures from the same forward passes:
      - every position of each window scored: the figure DATA.md gives (about 28);
      - only the second half of each window (llama.cpp's perplexity tool; every scored token
        sees at least 256 tokens of context, so the figure is lower)."""
    import numpy as np

    from slmkit.evaluate import log_softmax
    text = shared_path("corpora", "wikitext2-test.raw").read_text(encoding="utf-8")
    n, ctx = int(os.environ.get("SLMKIT_PPL_TOKENS", 16384)), 512
    tok = smollm2.tokenizer
    ids = tok.encode(text[:n * 8], add_bos=False)[:n]   # ~4 characters a token
    assert len(ids) == n
    bos = [tok.bos_id] if tok.add_bos and tok.bos_id is not None else []
    body = ctx - len(bos)
    start = time.perf_counter()
    nll_all, nll_half = [], []
    for s in range(0, n - body + 1, body):
        window = bos + ids[s:s + body]
        lp = log_softmax(smollm2.logits(window)[:-1])
        nll = -lp[np.arange(ctx - 1), window[1:]]
        nll_all.append(nll)
        nll_half.append(nll[ctx // 2:])
    ppl_all = float(np.exp(np.concatenate(nll_all).mean()))
    ppl_half = float(np.exp(np.concatenate(nll_half).mean()))
    print(f"\nSmolLM2-135M-Instruct Q4_1 (cpu backend), wikitext-2 test, first {n} tokens, ctx {ctx}, "
          f"{len(nll_all)} windows: perplexity {ppl_all:.2f} scoring every position "
          f"({sum(map(len, nll_all))} tokens), {ppl_half:.2f} scoring the second half of each "
          f"window ({sum(map(len, nll_half))} tokens) ({time.perf_counter() - start:.0f}s)")
    assert 24 < ppl_all < 32            # DATA.md: about 28
    assert 15 < ppl_half < ppl_all
