"""The generation loop: prefill the prompt, then decode token by token reusing the KV cache;
stream text pieces as soon as they are whole characters; stop on EOS, stop strings or length."""
from __future__ import annotations

import operator
import warnings
from typing import Iterator

import numpy as np

from .errors import SlmkitError
from .sampling import Sampler, SamplingParams


class StreamDecoder:
    """Turns a growing list of ids into text increments. Decodes with one token of left context
    (SentencePiece drops the leading space of a first piece) and holds back an incomplete
    UTF-8 sequence (shown as U+FFFD) until its last byte arrives."""

    def __init__(self, tokenizer, context_ids):
        self.tokenizer = tokenizer
        self.context = list(context_ids[-1:])
        self.prefix = tokenizer.decode(self.context) if self.context else ""
        self.ids: list[int] = []

    def push(self, token: int) -> None:
        self.ids.append(token)

    def text(self) -> str:
        return self.tokenizer.decode(self.context + self.ids)[len(self.prefix):]


def _stop_at(text: str, stops) -> int | None:
    """Index where the first stop string begins, or None."""
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _held_back(text: str, stops) -> int:
    """How many trailing characters could still grow into a stop string."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                longest = max(longest, n)
                break
    return longest


def stream_tokens(model, prompt_ids, max_new_tokens: int, params: SamplingParams, cache=None,
                  stop_ids=()) -> Iterator[int]:
    """Yield sampled token ids (EOS included, then stop). model is a slmkit.Model; stop_ids are
    more ids that end generation like EOS (e.g. a chat template's end-of-turn token)."""
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    if len(prompt_ids) == 0:
        raise ValueError("the prompt is empty: give at least one token id")
    sampler = Sampler(params)
    ctx = cache.max_seq if cache is not None else model.config.max_position_embeddings
    if len(prompt_ids) + max_new_tokens > ctx:
        if len(prompt_ids) >= ctx:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens, the context holds "
                             f"{ctx}: shorten the prompt to leave room for the reply")
        warnings.warn(f"the context holds {ctx} tokens: the reply stops after "
                      f"{ctx - len(prompt_ids)} new tokens, not {max_new_tokens}", stacklevel=3)
        max_new_tokens = ctx - len(prompt_ids)
    if max_new_tokens == 0:
        return
    # a cache for this reply only: a full-context one costs hundreds of MB once touched
    cache = cache or model.arch.new_cache(len(prompt_ids) + max_new_tokens)
    cache.reset()
    logits = check_finite(model, model.arch.forward(prompt_ids, cache), len(prompt_ids) - 1)
    history = list(prompt_ids)
    eos = model.tokenizer.eos_ids | frozenset(stop_ids)
    for step in range(max_new_tokens):
        token = sampler(logits, history)
        yield token
        if token in eos or step == max_new_tokens - 1:   # no forward pass nobody will use
            return
        history.append(token)
        logits = check_finite(model, model.arch.forward([token], cache), len(history) - 1)


def check_max_new_tokens(n) -> int:
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"max_new_tokens must be an integer, got {n!r}") from None
    if n < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {n}")
    return n


class NonFiniteLogitsError(SlmkitError, ValueError):
    """The forward pass produced NaN or infinite logits (usually NaN/inf in the weights)."""


def check_finite(model, logits, position: int):
    """logits, or a NonFiniteLogitsError naming the model and the tensors that hold NaN/inf."""
    if np.isfinite(logits).all():
        return logits
    bad = model.checkpoint.nonfinite_tensors(limit=5)
    where = (f"tensors holding NaN or inf: {', '.join(bad)}" if bad else
             "no weight holds NaN or inf, so the activations overflowed")
    raise NonFiniteLogitsError(f"{model.checkpoint.source}: the model produced NaN/inf logits at "
                               f"position {position}; {where}")


def stream_text(model, prompt_ids, max_new_tokens: int, params: SamplingParams, stop=(),
                stop_ids=()) -> Iterator[str]:
    """Yield text pieces; the concatenation is the generated text, cut before any stop string."""
    decoder = StreamDecoder(model.tokenizer, prompt_ids)
    if isinstance(stop, str):               # one stop string, not its characters
        stop = [stop]
    stop = [s for s in (stop or ()) if s]
    if not all(isinstance(s, str) for s in stop):
        raise TypeError(f"stop must be a string or a list of strings, got {stop!r}")
    end_ids = model.tokenizer.eos_ids | frozenset(stop_ids)
    sent = 0       # characters of decoder text already yielded
    for token in stream_tokens(model, prompt_ids, max_new_tokens, params, stop_ids=stop_ids):
        if token in end_ids:
            break
        decoder.push(token)
        full = decoder.text()
        if full.endswith("\ufffd"):
            continue
        cut = _stop_at(full, stop)
        if cut is not None:
            if cut > sent:
                yield full[sent:cut]
            return
        ready = len(full) - _held_back(full, stop)
        if ready > sent:
            yield full[sent:ready]
            sent = ready
    full = decoder.text().rstrip("\ufffd")
    cut = _stop_at(full, stop)
    end = cut if cut is not None else len(full)
    if end > sent:
        yield full[sent:end]
