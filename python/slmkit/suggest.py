"""Predictive text: the most likely next whole words after a text.

Models predict sub-word tokens, so a word is assembled by a small beam search: the first token must
start a word (a leading space then a letter or digit, or a letter or digit right after
punctuation), later tokens must continue it (start with a word character), and a word ends when
the next token does not (a space, punctuation, a control token such as EOS). A word's probability
is that of its tokens times the probability that a boundary follows; words reached by different
token paths add up. Beams branch from one prompt pass by copying its small KV cache.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from .evaluate import log_softmax

_EXTRA_WORD_CHARS = frozenset("'\u2019-_\ufffd")   # apostrophes and hyphens continue a word; U+FFFD:
                                                   # a token holding part of a multi-byte letter


def is_word_char(c: str) -> bool:
    return c.isalnum() or c in _EXTRA_WORD_CHARS


def _starts_word(c: str) -> bool:
    return c.isalnum() or c == "\ufffd"


class PieceTable:
    """Each token's text as it appears after other text (with its leading space), and masks over
    the vocabulary: which tokens start a word after a space, start one with no space, continue a
    word, and which carry the end of a word inside them (e.g. " it." or " Paris,")."""

    def __init__(self, tokenizer):
        anchor_ids = tokenizer.encode("a", add_bos=False)
        self.anchor = anchor_ids[-1:]
        self.anchor_text = tokenizer.decode(self.anchor)
        n = tokenizer.vocab_size
        self.texts = [self.text_after_anchor(tokenizer, [i]) for i in range(n)]
        self.starts_after_space = np.zeros(n, dtype=bool)
        self.starts_without_space = np.zeros(n, dtype=bool)
        self.continues = np.zeros(n, dtype=bool)
        self.ends_inside = np.zeros(n, dtype=bool)
        for i, s in enumerate(self.texts):
            core = s.lstrip(" ")
            if not core:
                continue
            if _starts_word(core[0]):
                if core is not s:
                    self.starts_after_space[i] = True
                else:
                    self.starts_without_space[i] = True
            if core is s and is_word_char(s[0]):
                self.continues[i] = True
            if is_word_char(core[0]) and not all(is_word_char(c) for c in core):
                self.ends_inside[i] = True

    def text_after_anchor(self, tokenizer, ids) -> str:
        return tokenizer.decode(self.anchor + list(ids))[len(self.anchor_text):]


_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def piece_table(tokenizer) -> PieceTable:
    """The PieceTable of a tokenizer, built once (about a second for a 50k vocabulary)."""
    table = _TABLES.get(tokenizer)
    if table is None:
        table = _TABLES[tokenizer] = PieceTable(tokenizer)
    return table


@dataclass
class _Beam:
    ids: list            # the word's tokens so far
    logp: float          # their log-probability
    cache: object        # KV cache after them
    next_logp: np.ndarray  # log-probabilities of the following token [vocab]


def _word_text(table: PieceTable, tokenizer, ids) -> str:
    text = table.text_after_anchor(tokenizer, ids).lstrip(" ")
    end = 0
    while end < len(text) and is_word_char(text[end]):
        end += 1
    return text[:end]


MAX_K = 100


def suggest_words(model, text: str, k: int = 3, beam_width: int | None = None,
                  max_word_tokens: int = 6) -> list[tuple[str, float]]:
    """[(word, probability), ...] for the k most likely next words after text, most likely first."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, got {k} (each suggestion is a beam "
                         f"of the search: time and memory grow with k)")
    if max_word_tokens < 1:
        raise ValueError(f"max_word_tokens must be at least 1, got {max_word_tokens}")
    beam_width = max(beam_width or k + 2, 1)
    tokenizer, arch = model.tokenizer, model.arch
    table = piece_table(tokenizer)
    context = text.rstrip(" ")       # "is " and "is" both ask for the word after "is"
    prompt = tokenizer.encode(context)
    if not prompt:
        raise ValueError("suggest needs some text to continue (the tokenizer has no BOS)")
    first_allowed = table.starts_after_space.copy()
    if not context or not is_word_char(context[-1]):
        first_allowed |= table.starts_without_space   # after "(" or a new line no space is needed

    cache = arch.new_cache(len(prompt) + max_word_tokens + 1)
    frontier = [_Beam([], 0.0, cache, log_softmax(arch.forward(prompt, cache)))]
    finished: dict[str, float] = {}

    def finish(ids, prob):
        word = _word_text(table, tokenizer, ids)
        if word and "\ufffd" not in word:
            finished[word] = finished.get(word, 0.0) + prob

    def kth_best() -> float:
        probs = sorted(finished.values(), reverse=True)
        return probs[k - 1] if len(probs) >= k else 0.0

    for depth in range(max_word_tokens + 1):
        candidates = []
        for beam in frontier:
            if depth > 0:          # the word may end here: a non-word token comes next
                end = beam.next_logp[~table.continues]
                finish(beam.ids, float(np.exp(beam.logp + np.logaddexp.reduce(end))))
            if depth == max_word_tokens:
                continue
            allowed = np.where(first_allowed if depth == 0 else table.continues, beam.next_logp, -np.inf)
            width = min(beam_width, allowed.shape[0])
            for t in np.argpartition(-allowed, width - 1)[:width]:
                if np.isfinite(allowed[t]):
                    candidates.append((beam.logp + float(allowed[t]), beam, int(t)))
        candidates.sort(key=lambda c: -c[0])
        floor = kth_best()   # probabilities only shrink as a word grows: weaker beams cannot win
        candidates = [c for c in candidates[:beam_width] if np.exp(c[0]) > floor]
        children_left = {}
        for _, parent, _ in candidates:
            children_left[id(parent)] = children_left.get(id(parent), 0) + 1
        frontier = []
        for logp, parent, t in candidates:
            ids = parent.ids + [t]
            children_left[id(parent)] -= 1
            if table.ends_inside[t]:       # the token itself holds the word's end
                finish(ids, float(np.exp(logp)))
                continue
            # the last child takes the parent's cache; the others branch from a copy
            cache = parent.cache if children_left[id(parent)] == 0 else parent.cache.copy()
            frontier.append(_Beam(ids, logp, cache, log_softmax(arch.forward([t], cache))))
        if not frontier:
            break
    ranked = sorted(finished.items(), key=lambda item: -item[1])
    return ranked[:k]


__all__ = ["PieceTable", "is_word_char", "piece_table", "suggest_words"]
