"""The numpy float64 reference backend: plain, obviously-correct math, for checking the C one."""
from __future__ import annotations

import numpy as np

from ..checkpoint import Tensor
from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    dtype = np.float64

    def __init__(self, threads: int | None = None):
        pass

    def prepare(self, tensor: Tensor):
        # Dequantised to the very values the C kernels compute with, then widened.
        return tensor.to_float32().astype(np.float64)

    def embed(self, weight, ids):
        return weight[np.asarray(ids)].copy()

    def matmul(self, x, weight):
        bias = None
        if isinstance(weight, tuple):
            weight, bias = weight
        y = x @ weight.T
        return y if bias is None else y + bias

    def rmsnorm(self, x, weight, eps):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    def rope_(self, x, pos, n_heads, head_dim, base, interleaved):
        m = x.shape[0]
        h = x.reshape(m, n_heads, head_dim)
        half = head_dim // 2
        freqs = base ** (-2.0 * np.arange(half) / head_dim)            # [half]
        angles = np.asarray(pos, dtype=np.float64)[:, None] * freqs     # [m, half]
        cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
        if interleaved:
            a, b = h[..., 0::2].copy(), h[..., 1::2].copy()
            h[..., 0::2] = a * cos - b * sin
            h[..., 1::2] = a * sin + b * cos
        else:
            a, b = h[..., :half].copy(), h[..., half:].copy()
            h[..., :half] = a * cos - b * sin
            h[..., half:] = a * sin + b * cos

    def attention(self, q, k, v, k_cache, v_cache, start_pos, n_heads, n_kv_heads, head_dim):
        m = q.shape[0]
        end = start_pos + m
        k_cache[:, start_pos:end] = k.reshape(m, n_kv_heads, head_dim).transpose(1, 0, 2)
        v_cache[:, start_pos:end] = v.reshape(m, n_kv_heads, head_dim).transpose(1, 0, 2)
        group = n_heads // n_kv_heads
        qh = q.reshape(m, n_heads, head_dim).transpose(1, 0, 2)         # [heads, m, hd]
        keys = np.repeat(k_cache[:, :end], group, axis=0)                # [heads, end, hd]
        values = np.repeat(v_cache[:, :end], group, axis=0)
        scores = qh @ keys.transpose(0, 2, 1) / np.sqrt(head_dim)        # [heads, m, end]
        visible = np.arange(end)[None, :] <= (start_pos + np.arange(m))[:, None]
        scores = np.where(visible, scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=-1, keepdims=True)
        out = p @ values                                                 # [heads, m, hd]
        return out.transpose(1, 0, 2).reshape(m, n_heads * head_dim)

    def silu_mul(self, gate, up):
        return gate / (1.0 + np.exp(-gate)) * up

    def add_(self, x, y):
        x += y
