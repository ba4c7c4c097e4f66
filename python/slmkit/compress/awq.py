"""AWQ-style activation-aware scaling (Lin et al., 2023) in numpy.

Input channels that carry large activations matter more, so before rounding the weight columns
are multiplied by s = mean|x|^alpha (normalised) and the preceding operation divides its output
by s: the float model computes the same function, but the salient columns get a finer grid.
Also tried, as AutoAWQ's "duo" scaling does, s = mean|x|^alpha / salience(w)^(1-alpha).
alpha is searched on a grid to minimise the output error of the quantised linears, measured
through the calibration Gram matrix: err = sum over rows of dW H dW^T, with dW = W - Q(W s)/s.
(The reference implementation measures the error of the whole block's output on sample
activations; the per-linear output error is the same quantity one level down, and needs no
activation samples.)

Where each scale is folded:
    q/k/v_proj inputs   -> input_layernorm weight
    gate/up_proj inputs -> post_attention_layernorm weight
    down_proj input     -> up_proj rows (silu(gate) * up is linear in up)
    o_proj input        -> v_proj rows (attention output is a mix of v rows per head); exact only
                           when the q heads that share a kv head share the scale, so for GQA the
                           statistics are averaged over those heads first (tied scales)
Then each weight is rounded to its block format, optionally with a per-group clipping search.
"""
from __future__ import annotations

import numpy as np

from .groups import dequant, quantize_rtn

ALPHA_GRID = 20
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)


def output_error(w: np.ndarray, q: np.ndarray, h: np.ndarray) -> float:
    """sum over rows of (w - q) H (w - q)^T: the squared output error over the calibration set."""
    d = (w - q).astype(np.float32)
    return float(((d @ h) * d).sum())


def rtn_values(w: np.ndarray, wtype: str, group: int, clip=1.0) -> np.ndarray:
    codes, p = quantize_rtn(np.asarray(w, np.float32), wtype, group, clip)
    s, o = p.columns(slice(0, w.shape[1]))
    return dequant(codes, s, o)


def tie_heads(x: np.ndarray, n_heads: int, n_kv_heads: int) -> np.ndarray:
    """Average per-channel statistics over the q heads sharing each kv head, so one scale per
    (kv head, dim) can be folded into v_proj exactly."""
    rep = n_heads // n_kv_heads
    t = x.reshape(n_kv_heads, rep, -1).mean(axis=1, keepdims=True)
    return np.broadcast_to(t, (n_kv_heads, rep, t.shape[-1])).reshape(-1)


def weight_salience(weights: list[np.ndarray], group: int) -> np.ndarray:
    """Per input channel: the mean over rows of |w| relative to the largest |w| of its group
    (the weight side of AutoAWQ's "duo" scaling)."""
    a = np.abs(np.concatenate(weights, axis=0)).astype(np.float64)
    k = a.shape[1]
    starts = np.arange(0, k, group)
    group_max = np.maximum.reduceat(a, starts, axis=1)                 # [rows, groups]
    return (a / (np.repeat(group_max, np.diff(np.append(starts, k)), axis=1) + 1e-6)).mean(axis=0)


def search_scale(weights: list[np.ndarray], mean_abs: np.ndarray, h: np.ndarray, wtype,
                 group, grid: int = ALPHA_GRID, salience: np.ndarray | None = None
                 ) -> tuple[np.ndarray, float, float, float]:
    """The per-input-channel scale s minimising the summed output error of the linears sharing
    this input, over s = x^alpha and, given the weights' salience w, s = x^alpha / w^(1-alpha)
    (AutoAWQ's duo scaling). wtype and group: one for all weights, or a list (mixed precision).
    Returns s, the chosen alpha, its error, and the error without scaling."""
    h = np.asarray(h, np.float32)
    x = np.maximum(np.asarray(mean_abs, np.float64), 1e-8)
    wtypes = wtype if isinstance(wtype, (list, tuple)) else [wtype] * len(weights)
    groups = group if isinstance(group, (list, tuple)) else [group] * len(weights)
    formats = list(zip(weights, wtypes, groups))

    def error(s):
        return sum(output_error(w, rtn_values(w * s, t, g) / s, h) for w, t, g in formats)

    base_err = error(np.ones(x.shape, np.float32))
    best = (np.ones(x.shape, np.float32), 0.0, base_err)
    families = [lambda a: x ** a]
    if salience is not None:
        families.append(lambda a: x ** a / (np.asarray(salience, np.float64) ** (1 - a) + 1e-4))
    for family in families:
        for alpha in np.arange(1, grid) / grid:
            s = np.maximum(family(alpha), 1e-4)
            s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)
            err = error(s)
            if err < best[2]:
                best = (s, float(alpha), err)
    return best[0], best[1], best[2], base_err


def clip_search(w: np.ndarray, h: np.ndarray, wtype: str, group: int,
                ratios=CLIP_RATIOS) -> np.ndarray:
    """Per (row, group) range shrink factor minimising that group's output error (cross-group
    terms of H ignored). Returns clip [n, n_groups]."""
    n, k = w.shape
    ng = -(-k // group)
    h = np.asarray(h, np.float32)
    errs = np.empty((len(ratios), n, ng))
    for r, ratio in enumerate(ratios):
        d = (w - rtn_values(w, wtype, group, ratio)).astype(np.float32)
        for g in range(ng):
            sl = slice(g * group, min((g + 1) * group, k))
            errs[r, :, g] = ((d[:, sl] @ h[sl, sl]) * d[:, sl]).sum(axis=1)
    return np.asarray(ratios, np.float32)[errs.argmin(axis=0)]


def fold_scales(weights: dict[str, np.ndarray], scales: dict[str, np.ndarray], n_heads: int,
                n_kv_heads: int) -> None:
    """Fold per-channel scales into one layer's float weights in place (by short names, as in
    LayerContext.weights). scales keys: 'q' (q/k/v input), 'o', 'gate' (gate/up input), 'down'.
    The layer computes the same function afterwards."""
    if "o" in scales:
        s = scales["o"]
        head_dim = s.shape[0] // n_heads
        rep = n_heads // n_kv_heads
        s_v = s.reshape(n_kv_heads, rep, head_dim)[:, 0, :].reshape(-1)
        if not np.allclose(np.repeat(s_v.reshape(n_kv_heads, 1, head_dim), rep, 1).reshape(-1), s):
            raise ValueError("o_proj scales must be tied across the q heads sharing a kv head")
        weights["self_attn.v_proj"] /= s_v[:, None]
        if "self_attn.v_proj.bias" in weights:
            weights["self_attn.v_proj.bias"] /= s_v
        weights["self_attn.o_proj"] *= s[None, :]
    if "down" in scales:
        s = scales["down"]
        weights["mlp.up_proj"] /= s[:, None]
        weights["mlp.down_proj"] *= s[None, :]
    if "q" in scales:
        s = scales["q"]
        weights["input_layernorm"] /= s
        for p in ("q", "k", "v"):
            weights[f"self_attn.{p}_proj"] *= s[None, :]
    if "gate" in scales:
        s = scales["gate"]
        weights["post_attention_layernorm"] /= s
        for p in ("gate", "up"):
            weights[f"mlp.{p}_proj"] *= s[None, :]
