"""The tokenizer interface that models, generation and evaluation rely on."""
from __future__ import annotations

import re
from abc import ABC, abstractmethod


class Tokenizer(ABC):
    """Text <-> token ids.

    Subclasses set, in __init__:
      vocab_size     number of ids
      bos_id         id of the beginning-of-sequence token, or None
      eos_ids        set of ids that end generation (EOS, end-of-turn, ...)
      add_bos        whether encode() adds BOS by default (the vocabulary's own flag)
      chat_template  Jinja chat template string, or None
    """

    vocab_size: int
    bos_id: int | None = None
    eos_ids: frozenset[int] = frozenset()
    add_bos: bool = True
    chat_template: str | None = None

    @property
    def bos_prefix(self) -> list[int]:
        """What a sequence starts with: [BOS] where the vocabulary adds one (add_bos), else []
        (SmolLM2's BOS is <|im_start|>, which plain text never begins with)."""
        return [self.bos_id] if self.add_bos and self.bos_id is not None else []

    @property
    def eos_id(self) -> int | None:
        return min(self.eos_ids) if self.eos_ids else None

    @abstractmethod
    def _encode(self, text: str, parse_special: bool) -> list[int]:
        """Ids of text, without BOS."""

    @abstractmethod
    def decode(self, ids) -> str:
        """Text of ids; control tokens (BOS/EOS/...) are dropped."""

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = False) -> list[int]:
        """Ids of text. BOS is added once (never twice) when add_bos (default: the vocabulary's
        flag). Text that looks like a special token stays plain text unless parse_special."""
        ids = self._encode(text, parse_special)
        if add_bos is None:
            add_bos = self.add_bos
        if add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
        return ids

    def special_token_texts(self) -> dict[str, int] | None:
        """Text -> id of the tokens that only parse_special=True reads out of text (control
        tokens such as '<|im_start|>'); None when this kind of tokenizer cannot say."""
        return None

    def encode_with_plain_spans(self, text: str, plain_spans, add_bos: bool | None = None) -> list[int]:
        """encode(text, parse_special=True), except that special-token text inside plain_spans
        ((start, end) character ranges: the messages of a rendered chat) stays plain text, so a
        message cannot forge control tokens. When no span holds special-token text, the ids are
        exactly those of encode(text, parse_special=True)."""
        specials = self.special_token_texts()
        spans = [(int(a), int(b)) for a, b in plain_spans or () if b > a]
        if specials and spans:
            pattern = re.compile("|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)))
            matches = list(pattern.finditer(text))
            forged = {m.start() for m in matches if any(a < m.end() and m.start() < b for a, b in spans)}
            if forged:
                ids: list[int] = []
                position = 0
                for m in matches:
                    if m.start() in forged:
                        continue                      # stays inside the plain piece around it
                    if m.start() > position:
                        ids.extend(self._encode(text[position:m.start()], False))
                    ids.append(specials[m.group()])
                    position = m.end()
                if position < len(text):
                    ids.extend(self._encode(text[position:], False))
                if add_bos is None:
                    add_bos = self.add_bos
                if add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
                    ids = [self.bos_id] + ids
                return ids
        return self.encode(text, add_bos=add_bos, parse_special=True)
