"""The interface a backend implements. A model is written once against it."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..checkpoint import Tensor


class Backend(ABC):
    """Runs the operations of a Llama-family forward pass.

    Activations are 2-D arrays [rows, features] in the backend's own dtype. Weights are first
    handed to prepare(), whose result is what the other methods receive.
    """

    name: str = "?"
    dtype = np.float32

    @abstractmethod
    def prepare(self, tensor: Tensor):
        """A weight in whatever form this backend computes with."""

    @abstractmethod
    def embed(self, weight, ids: np.ndarray) -> np.ndarray:
        """Rows `ids` of an embedding table: [len(ids), dim]."""

    @abstractmethod
    def matmul(self, x: np.ndarray, weight) -> np.ndarray:
        """x[m, k] @ W[n, k]^T -> [m, n]."""

    @abstractmethod
    def rmsnorm(self, x: np.ndarray, weight, eps: float) -> np.ndarray: ...

    @abstractmethod
    def rope_(self, x: np.ndarray, pos: np.ndarray, n_heads: int, head_dim: int, base: float,
              interleaved: bool) -> None:
        """Rotate x[m, n_heads*head_dim] in place."""

    @abstractmethod
    def attention(self, q, k, v, k_cache, v_cache, start_pos: int, n_heads: int, n_kv_heads: int,
                  head_dim: int) -> np.ndarray:
        """Append k/v to the caches at start_pos and attend causally: [m, n_heads*head_dim]."""

    @abstractmethod
    def silu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def add_(self, x: np.ndarray, y: np.ndarray) -> None:
        """x += y."""

    kv_caches = ("f32",)            # KV-cache kinds new_kv_cache makes
    # activation precisions of prefill matmuls that compile_llama's pass offers beside the
    # default ("int16": the cpu backend's int16 blocks; the numpy reference is float64 anyway)
    prefill_acts = ("int16",)

    def new_kv_cache(self, n_kv_heads: int, max_seq: int, head_dim: int, kind: str = "f32"):
        """The caches of one layer: (k_cache, v_cache), [n_kv_heads, max_seq, head_dim] each
        in the backend's dtype ("f32" means: full precision)."""
        if kind != "f32":
            raise ValueError(f"the {self.name} backend has no {kind!r} KV cache; it has "
                             f"{', '.join(self.kv_caches)}")
        shape = (n_kv_heads, max_seq, head_dim)
        return np.zeros(shape, dtype=self.dtype), np.zeros(shape, dtype=self.dtype)

    def compile_llama(self, model):
        """A whole forward pass of a models.llama.LlamaModel in one call, for backends that have
        one: an object with forward(ids, cache, all_logits) -> logits. None (the default): the
        model runs op by op through the methods above."""
        return None

    def info(self) -> dict:
        return {"backend": self.name}
