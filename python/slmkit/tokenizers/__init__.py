"""Tokenizers: every kind of vocabulary file slmkit reads, behind one small interface."""
from .base import Tokenizer

__all__ = ["Tokenizer"]
BUILTIN_TOKENIZERS = []  # filled by the tokenizer modules
