"""Judging a model on real text: perplexity, and against a base model the KL divergence of the
next-token distributions and top-1 agreement (the statistics llama.cpp's perplexity tool reports).

Scoring follows llama.cpp's perplexity tool, so figures compare with what its users know: the
text is cut into non-overlapping windows of `ctx` tokens, each starting with BOS (where the
tokenizer has one), and only the second half of each window is scored, so every scored token
sees at least ctx/2 tokens of context. score_all=True scores every position after BOS instead
(teacher-forced agreement over a whole text).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class EvalResult:
    ppl: float
    tokens: int                     # positions scored (the second half of each window)
    kl_mean: float | None = None    # mean KL(base || model) in nats
    kl_p99: float | None = None
    top1: float | None = None       # fraction of positions where both argmaxes agree

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self):
        s = f"ppl {self.ppl:.4f} over {self.tokens} tokens"
        if self.kl_mean is not None:
            s += f"; KL mean {self.kl_mean:.5f}, p99 {self.kl_p99:.5f}; top-1 {100 * self.top1:.2f}%"
        return s


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def windows(ids: list[int], ctx: int, bos_id: int | None, tail: bool = False):
    """Non-overlapping windows of ctx tokens (BOS first where there is one); with tail, the
    leftover tokens form one last, shorter window."""
    body = ctx - 1 if bos_id is not None else ctx
    if ctx < 4:
        raise ValueError(f"context {ctx} is too short to score anything")
    starts = range(0, len(ids) - (0 if tail else body - 1), body)
    out = [([bos_id] if bos_id is not None else []) + list(ids[s:s + body]) for s in starts]
    if not out:
        raise ValueError(f"the text has {len(ids)} tokens: fewer than one window of {ctx}; "
                         f"use a smaller ctx or more text")
    return out


def evaluate(model, text: str | None = None, base=None, ctx: int = 512, max_tokens: int | None = None,
             ids: list[int] | None = None, progress: Callable[[int, int], None] | None = None,
             score_all: bool = False) -> EvalResult:
    """Perplexity of `model` on `text` (or pre-tokenised `ids`); with `base`, KL and top-1
    against it. max_tokens caps how many text tokens are used."""
    if ids is None:
        if not text:
            raise ValueError("evaluate: the text is empty")
        ids = model.tokenizer.encode(text, add_bos=False)
    bos = model.tokenizer.bos_id
    nll_sum, count = 0.0, 0
    kls, agree = [], 0
    if max_tokens is not None:
        ids = ids[:max_tokens]
    wins = windows(ids, ctx, bos, tail=score_all)
    for i, win in enumerate(wins):
        first = 0 if score_all else ctx // 2                 # llama.cpp: second half only
        lp_scored = log_softmax(model.logits(win)[first:-1])  # [ctx-1-first, vocab]
        targets = np.asarray(win[first + 1:])
        nll_sum -= float(lp_scored[np.arange(len(targets)), targets].sum())
        count += len(targets)
        if base is not None:
            blp = log_softmax(base.logits(win)[first:-1])
            kls.append((np.exp(blp) * (blp - lp_scored)).sum(axis=-1))
            agree += int((blp.argmax(-1) == lp_scored.argmax(-1)).sum())
        if progress:
            progress(i + 1, len(wins))
    result = EvalResult(ppl=float(np.exp(nll_sum / count)), tokens=count)
    if base is not None:
        kl = np.concatenate(kls)
        result.kl_mean = float(kl.mean())
        result.kl_p99 = float(np.percentile(kl, 99))
        result.top1 = agree / count
    return result
