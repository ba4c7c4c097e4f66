"""Backends run a model's operations: `cpu` (slmkit's C kernels) and `numpy` (float64 reference)."""
from .base import Backend

__all__ = ["Backend"]
