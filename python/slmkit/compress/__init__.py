"""Compression techniques: each turns a Checkpoint into a new Checkpoint (never touching files)."""
from .base import Technique

__all__ = ["Technique"]
