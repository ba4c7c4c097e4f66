"""The tokenizer interface that models, generation and evaluation rely on."""
from __future__ import annotations

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
