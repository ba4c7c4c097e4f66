"""The CPU backend: slmkit's C kernels (SIMD variant chosen at run time) and thread pool."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import _native
from ..checkpoint import Tensor
from .base import Backend


@dataclass
class Weight:
    """A weight as the kernels take it: raw rows in their storage type, plus an optional bias."""

    wtype: int
    data: np.ndarray     # [n, row_bytes] uint8, or [n, k] float32/float16/uint16(bf16)
    n: int
    k: int
    bias: np.ndarray | None = None


MAX_THREADS = 4096          # a pool of more threads than this is a typo, not a machine


def default_threads() -> int:
    """SLMKIT_THREADS if set, else the number of physical cores."""
    env = os.environ.get("SLMKIT_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"SLMKIT_THREADS must be an integer from 1 to {MAX_THREADS}, got {env!r}")
        return n
    return _native.physical_cores()


def repack_from_env() -> bool:
    """SLMKIT_REPACK: 0/no/false/off runs quantised weights in their stored layout; unset or
    1/yes/true/on repacks them (the default)."""
    env = os.environ.get("SLMKIT_REPACK", "").strip().lower()
    if env in ("", "1", "yes", "true", "on"):
        return True
    if env in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"SLMKIT_REPACK must be 0 or 1 (or no/yes, false/true, off/on), "
                     f"got {os.environ['SLMKIT_REPACK']!r}")


def check_threads(threads) -> int:
    """threads as a positive int; None means the default (SLMKIT_THREADS or physical cores)."""
    if threads is None:
        return default_threads()
    if (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
            or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"threads must be an integer from 1 to {MAX_THREADS} (leave it unset for "
                         f"the default: "
                         f"SLMKIT_THREADS, else the {_native.physical_cores()} physical cores); "
                         f"got {threads!r}")
    return int(threads)


class CpuBackend(Backend):
    name = "cpu"
    dtype = np.float32

    def __init__(self, threads: int | None = None):
        self.threads = check_threads(threads)
        self.pool = _native.Pool(self.threads)

    def prepare(self, tensor: Tensor):
        if len(tensor.shape) == 1:  # norms and biases: plain float32 vectors
            return tensor.to_float32()
        n, k = tensor.shape
        data = tensor.data
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        return Weight(_native.type_id(tensor.wtype), data, n, k)

    def embed(self, weight: Weight, ids):
        rows = weight.data[np.asarray(ids)]
        if weight.wtype == _native.F32:
            return np.array(rows, dtype=np.float32)
        return _native.dequantize(rows, weight.wtype, weight.k)

    def matmul(self, x, weight):
        bias = None
        if isinstance(weight, tuple):
            weight, bias = weight
        y = _native.matmul(x, weight.data, weight.wtype, weight.n, weight.k, self.pool)
        if bias is not None:
            y += bias
        return y

    def rmsnorm(self, x, weight, eps):
        return _native.rmsnorm(x, weight, eps)

    def rope_(self, x, pos, n_heads, head_dim, base, interleaved):
        _native.rope_(x, pos, n_heads, head_dim, base, interleaved)

    def attention(self, q, k, v, k_cache, v_cache, start_pos, n_heads, n_kv_heads, head_dim):
        return _native.attention(q, k, v, k_cache, v_cache, start_pos, n_heads, n_kv_heads,
                                 head_dim, self.pool)

    def silu_mul(self, gate, up):
        return _native.silu_mul(gate, up, out=gate)

    def add_(self, x, y):
        _native.add_(x, y)

    kv_caches = ("f32", "int8")
    prefill_acts = ("int16", "int8")

    def new_kv_cache(self, n_kv_heads: int, max_seq: int, head_dim: int, kind: str = "f32"):
        """f32: (k, v) float32; int8: (k, v) int8 rows and (k_scale, v_scale) [n_kv, max_seq]."""
        if kind != "int8":
            return super().new_kv_cache(n_kv_heads, max_seq, head_dim, kind)
        shape = (n_kv_heads, max_seq, head_dim)
        return (np.zeros(shape, np.int8), np.zeros(shape, np.int8),
                np.zeros(shape[:2], np.float32), np.zeros(shape[:2], np.float32))

    def compile_llama(self, model):
        return CompiledLlama(model, self)

    def info(self) -> dict:
        return {"backend": self.name, "kernel": _native.kernel_name(), "threads": self.threads}


class CompiledLlama:
    """The Llama forward pass as one C call (csrc/llama.c) over the weights prepare() made."""

    def __init__(self, model, backend: CpuBackend):
        cfg = model.config

        def weight(w):
            w, bias = w if isinstance(w, tuple) else (w, None)
            return w.wtype, w.data, bias

        layers = [{name: (weight(w) if isinstance(w, (Weight, tuple)) else w)
                   for name, w in layer.items()} for layer in model.layers]
        config = dict(dim=cfg.hidden_size, ffn_dim=cfg.intermediate_size,
                      n_layers=cfg.num_hidden_layers, n_heads=cfg.num_attention_heads,
                      n_kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
                      vocab=cfg.vocab_size, norm_eps=cfg.rms_norm_eps, rope_base=cfg.rope_theta,
                      rope_interleaved=int(cfg.rope_interleaved),
                      kv_type=_native.Q8_0 if model.kv_cache == "int8" else _native.F32,
                      prefill_act_bits=8 if model.prefill_act == "int8" else 16,
                      keep_layout=int(not repack_from_env()))
        self.native = _native.LlamaForward(config, weight(model.embed_tokens), model.norm,
                                           weight(model.lm_head), layers)
        self.pool = backend.pool
        self.repacked = self.native.repacked                 # matrices repacked at load
        self.prefill_act = "int8" if self.native.prefill_act_bits == 8 else "int16"   # in effect

    def forward(self, ids: np.ndarray, cache, all_logits: bool) -> np.ndarray:
        if cache.handle is None:
            cache.handle = _native.LlamaForward.cache_pointers(cache.layers)
        return self.native.forward(ids, cache.pos, cache.handle, cache.max_seq, self.pool,
                                   all_logits)
