"""Judging a model on real text: perplexity, and against a base model the KL divergence of the
next-token distributions and top-1 agreement (the statistics llama.cpp's perplexity tool reports).

Text is cut into non-overlapping windows of `ctx` tokens; each window starts with BOS (where the
tokenizer has one) and every position after the first is scored.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class EvalResult:
    ppl: float
    tokens: int                     # positions scored
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


def windows(ids: list[int], ctx: int, bos_id: int | None, max_tokens: int | None = None):
    """Non-overlapping windows of ctx tokens (BOS first where there is one)."""
    body = ctx - 1 if bos_id is not None else ctx
    if body < 2:
        raise ValueError(f"context {ctx} is too short to score anything")
    if max_tokens is not None:
        ids = ids[:max_tokens]
    out = []
    for start in range(0, len(ids) - 1, body):
        chunk = ids[start:start + body]
        if len(chunk) < 2:
            break
        out.append(([bos_id] if bos_id is not None else []) + list(chunk))
    if not out:
        raise ValueError(f"the text has {len(ids)} tokens: too few to score")
    return out


def evaluate(model, text: str | None = None, base=None, ctx: int = 512, max_tokens: int | None = None,
             ids: list[int] | None = None, progress: Callable[[int, int], None] | None = None
             ) -> EvalResult:
    """Perplexity of `model` on `text` (or pre-tokenised `ids`); with `base`, KL and top-1
    against it. max_tokens caps how many text tokens are used."""
    if ids is None:
        if not text:
            raise ValueError("evaluate: the text is empty")
        ids = model.tokenizer.encode(text, add_bos=False)
    bos = model.tokenizer.bos_id
    nll_sum, count = 0.0, 0
    kls, agree = [], 0
    wins = windows(ids, ctx, bos, max_tokens)
    for i, win in enumerate(wins):
        lp_scored = log_softmax(model.logits(win))[:-1]    # [len-1, vocab], predicts win[1:]
        targets = np.asarray(win[1:])
        nll_sum -= float(lp_scored[np.arange(len(targets)), targets].sum())
        count += len(targets)
        if base is not None:
            blp = log_softmax(base.logits(win))[:-1]
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
