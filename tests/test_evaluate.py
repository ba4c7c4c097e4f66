"""Perplexity, KL and top-1 against a direct float64 computation on a random model."""
import numpy as np
import pytest

from slmkit.evaluate import evaluate, windows
from slmkit.loading import model_from_checkpoint
from utils import random_checkpoint


def direct(model, base, ids, ctx, score_all):
    """The statistics computed the plain way, window by window."""
    nll, kls, agree = [], [], []
    body = ctx - 1
    starts = range(0, len(ids) - (0 if score_all else body - 1), body)
    for s in starts:
        win = [1] + ids[s:s + body]
        first = 0 if score_all else ctx // 2
        lp = model.logits(win).astype(np.float64)
        lp = lp - np.log(np.exp(lp - lp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lp.max(-1, keepdims=True)
        bp = base.logits(win).astype(np.float64)
        bp = bp - np.log(np.exp(bp - bp.max(-1, keepdims=True)).sum(-1, keepdims=True)) - bp.max(-1, keepdims=True)
        for pos in range(first, len(win) - 1):
            nll.append(-lp[pos, win[pos + 1]])
            kls.append(float((np.exp(bp[pos]) * (bp[pos] - lp[pos])).sum()))
            agree.append(lp[pos].argmax() == bp[pos].argmax())
    return np.exp(np.mean(nll)), np.mean(kls), np.percentile(kls, 99), np.mean(agree), len(nll)


@pytest.mark.parametrize("score_all", [False, True])
def test_statistics_match_direct_computation(score_all):
    base = model_from_checkpoint(random_checkpoint(seed=1), "numpy")
    other = model_from_checkpoint(random_checkpoint(seed=2), "numpy")
    ids = list(np.random.default_rng(0).integers(3, 259, size=150))
    r = evaluate(other, ids=ids, base=base, ctx=32, score_all=score_all)
    ppl, kl, p99, top1, n = direct(other, base, ids, 32, score_all)
    assert r.tokens == n
    assert r.ppl == pytest.approx(ppl, rel=1e-9)
    assert r.kl_mean == pytest.approx(kl, rel=1e-9)
    assert r.kl_p99 == pytest.approx(p99, rel=1e-9)
    assert r.top1 == pytest.approx(top1)


def test_same_model_has_zero_kl():
    m = model_from_checkpoint(random_checkpoint(seed=1), "numpy")
    r = evaluate(m, text="the quick brown fox jumps over the lazy dog " * 4, base=m, ctx=32)
    assert r.kl_mean == pytest.approx(0, abs=1e-12) and r.top1 == 1.0


def test_windows_and_errors():
    assert windows(list(range(10, 20)), 4, bos_id=1) == [[1, 10, 11, 12], [1, 13, 14, 15], [1, 16, 17, 18]]
    assert windows(list(range(10, 20)), 4, bos_id=1, tail=True)[-1] == [1, 19]
    m = model_from_checkpoint(random_checkpoint(seed=1), "numpy")
    with pytest.raises(ValueError, match="fewer than one window"):
        evaluate(m, text="hi", ctx=32)
    with pytest.raises(ValueError, match="empty"):
        evaluate(m, text="", ctx=32)


def test_many_models_in_one_pass_match_one_at_a_time():
    from slmkit.evaluate import evaluate_many
    base = model_from_checkpoint(random_checkpoint(seed=1), "numpy")
    others = [model_from_checkpoint(random_checkpoint(seed=s), "numpy") for s in (2, 3)]
    ids = list(np.random.default_rng(1).integers(3, 259, size=120))
    together = evaluate_many(others + [base], ids=ids, base=base, ctx=32)
    for model, r in zip(others + [base], together):
        assert r == evaluate(model, ids=ids, base=base, ctx=32)
    assert together[-1].kl_mean == 0 and together[-1].top1 == 1


def test_models_given_as_paths(stories_hf):
    import slmkit
    r = slmkit.evaluate(str(stories_hf), "Once upon a time there was a cat. " * 20, ctx=64)
    assert r.tokens > 0 and r.kl_mean is None


def test_base_with_another_vocabulary_is_refused():
    m = model_from_checkpoint(random_checkpoint(seed=1), "numpy")
    other = model_from_checkpoint(random_checkpoint(seed=2, vocab_size=300), "numpy")
    with pytest.raises(ValueError, match="vocabularies differ"):
        evaluate(m, text="the quick brown fox jumps over the lazy dog " * 4, base=other, ctx=32)


def test_windows_start_with_bos_only_where_the_vocabulary_adds_it():
    """SmolLM2's vocabulary names <|im_start|> as BOS but never adds it: plain text is scored
    without it (with it, SmolLM2's wikitext-2 perplexity read 22.2 instead of 21.1)."""
    m = model_from_checkpoint(random_checkpoint(seed=1), "numpy")
    ids = list(np.random.default_rng(3).integers(3, 259, size=100))
    with_bos = evaluate(m, ids=ids, ctx=32, score_all=True)
    m.tokenizer.add_bos = False
    without = evaluate(m, ids=ids, ctx=32, score_all=True)
    nll = []
    for s in range(0, len(ids), 32):                      # windows of 32 plain tokens
        win = ids[s:s + 32]
        lp = m.logits(win).astype(np.float64)
        lp = lp - lp.max(-1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
        nll += [-lp[p, win[p + 1]] for p in range(len(win) - 1)]
    assert without.tokens == len(nll) and with_bos.tokens != len(nll)
    assert without.ppl == pytest.approx(np.exp(np.mean(nll)), rel=1e-9)
