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
    """Non-overlapping windows of ctx tokens (bos_id first, unless None); with tail, the
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


class Tally:
    """Running statistics of one model over the scored positions."""

    def __init__(self):
        self.nll_sum, self.count, self.agree, self.kls = 0.0, 0, 0, []

    def add(self, lp: np.ndarray, targets: np.ndarray, base_lp: np.ndarray | None) -> None:
        self.nll_sum -= float(lp[np.arange(len(targets)), targets].sum())
        self.count += len(targets)
        if base_lp is not None:
            self.kls.append((np.exp(base_lp) * (base_lp - lp)).sum(axis=-1))
            self.agree += int((base_lp.argmax(-1) == lp.argmax(-1)).sum())

    def result(self) -> EvalResult:
        result = EvalResult(ppl=float(np.exp(self.nll_sum / self.count)), tokens=self.count)
        if self.kls:
            kl = np.concatenate(self.kls)
            result.kl_mean = float(kl.mean())
            result.kl_p99 = float(np.percentile(kl, 99))
            result.top1 = self.agree / self.count
        return result


def evaluate_many(models, text: str | None = None, base=None, ctx: int = 512,
                  max_tokens: int | None = None, ids: list[int] | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  score_all: bool = False) -> list[EvalResult]:
    """evaluate() for several models (variants of one model, sharing its tokenizer) in one pass
    over the windows: the base's distributions are computed once per window, not once per model.
    Models are tokenised with the first one's tokenizer."""
    models = list(models)
    if not models:
        raise ValueError("evaluate: no model to evaluate")
    tokenizer = models[0].tokenizer
    vocabs = {m.config.vocab_size for m in models + ([base] if base else [])}
    if len(vocabs) > 1:
        raise ValueError(f"evaluate: the models' vocabularies differ in size ({sorted(vocabs)}): "
                         f"next-token distributions only compare within one model's variants")
    limit = min(m.config.max_position_embeddings for m in models + ([base] if base else []))
    if ctx > limit:
        raise ValueError(f"context {ctx} is longer than the model's {limit} positions")
    if ids is None:
        if not text:
            raise ValueError("evaluate: the text is empty")
        ids = tokenizer.encode(text, add_bos=False)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    wins = windows(ids, ctx, tokenizer.bos_id if tokenizer.bos_prefix else None, tail=score_all)
    first = 0 if score_all else ctx // 2                     # llama.cpp: second half only
    tallies = [Tally() for _ in models]
    for i, win in enumerate(wins):
        targets = np.asarray(win[first + 1:])
        base_lp = log_softmax(base.logits(win)[first:-1]) if base is not None else None
        for model, tally in zip(models, tallies):
            lp = base_lp if model is base else log_softmax(model.logits(win)[first:-1])
            tally.add(lp, targets, base_lp)
        if progress:
            progress(i + 1, len(wins))
    return [t.result() for t in tallies]


def as_model(model, backend: str = "cpu", threads: int | None = None):
    """A loaded Model as it is; a path or catalogue name loaded."""
    if hasattr(model, "logits"):
        return model
    from .loading import load
    return load(model, backend=backend, threads=threads)


def read_text(path) -> str:
    """A UTF-8 text file's contents, or an error naming the file."""
    from pathlib import Path
    path = Path(path).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None


def evaluate(model, text: str | None = None, base=None, ctx: int = 512, max_tokens: int | None = None,
             ids: list[int] | None = None, progress: Callable[[int, int], None] | None = None,
             score_all: bool = False, backend: str = "cpu", threads: int | None = None) -> EvalResult:
    """Perplexity of `model` on `text` (or pre-tokenised `ids`); with `base`, KL and top-1
    against it. model and base are loaded Models or paths / catalogue names (loaded with
    backend and threads). max_tokens caps how many text tokens are used."""
    model = as_model(model, backend, threads)
    base = as_model(base, backend, threads) if base is not None else None
    return evaluate_many([model], text, base, ctx, max_tokens, ids, progress, score_all)[0]
