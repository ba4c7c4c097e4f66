"""GPTQ (Frantar et al., 2022) in numpy: quantise a weight column by column, spreading each
column's rounding error over the columns not yet quantised through the inverse Hessian of the
layer's inputs, H = 2 X^T X / N. Lazy block updates: the error of a block of columns reaches the
columns after it in one matrix product. Groups share a scale/minimum, computed from the (already
updated) weights of the group when its first column comes up; with act-order the columns are
visited by decreasing H diagonal, while groups stay contiguous runs of input channels, so the
result is stored in the same block formats as round-to-nearest.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .groups import GroupParams, codes_for, params_for

log = logging.getLogger("slmkit.compress")

MAX_DAMP_TRIES = 8
FIRST_DAMP = 1e-4     # where damping starts growing when the caller asked for none


def inverse_hessian_factor(h: np.ndarray, damp: float) -> tuple[np.ndarray, float]:
    """Upper Cholesky factor U of (H + lambda I)^-1 (U^T U = the inverse), lambda = damp *
    mean(diag H). When H is not positive definite (few or repeated samples), damp grows tenfold
    until it is. Returns U and the damping fraction used.

    One factorisation: with P the order-reversing permutation and P H P = L L^T (lower L),
    H^-1 = (P L^-T P)(P L^-1 P), and P L^-1 P is upper triangular: that is U."""
    h = np.array(h, dtype=np.float64)
    mean_diag = float(np.mean(np.diag(h))) or 1.0
    k = h.shape[0]
    rev = np.arange(k)[::-1]
    for _ in range(MAX_DAMP_TRIES):
        try:
            damped = h[np.ix_(rev, rev)]
            damped[np.diag_indices(k)] += damp * mean_diag
            lower = np.linalg.cholesky(damped)
            upper = np.linalg.solve(lower, np.eye(k))[np.ix_(rev, rev)]
            if np.all(np.isfinite(upper)):
                return upper, damp
        except np.linalg.LinAlgError:
            pass
        grown = damp * 10 if damp > 0 else FIRST_DAMP     # growing from zero needs a start
        log.info("GPTQ: Hessian not positive definite with damping %.3g; trying %.3g", damp, grown)
        damp = grown
    raise np.linalg.LinAlgError(f"GPTQ: the Hessian stays singular even with damping {damp / 10:.3g}")


@dataclass
class PreparedHessian:
    """What GPTQ needs of a Hessian, computed once for all the linears that share an input."""

    order: np.ndarray       # the order columns are visited in
    upper: np.ndarray       # inverse_hessian_factor of H with rows/columns in that order
    dead: np.ndarray        # inputs that are always zero
    damp: float             # the damping used


def prepare_hessian(h: np.ndarray, act_order: bool = False, damp: float = 0.01) -> PreparedHessian:
    h = np.array(h, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(h.shape[0])
    upper, used = inverse_hessian_factor(h[np.ix_(order, order)], damp)
    return PreparedHessian(order, upper, dead, used)


def gptq(w: np.ndarray, h: np.ndarray | None, wtype: str, group: int, act_order: bool = False,
         damp: float = 0.01, block: int = 128, prepared: PreparedHessian | None = None
         ) -> tuple[np.ndarray, GroupParams, float]:
    """GPTQ of w[n, k] against Hessian h[k, k] (or a prepare_hessian() of it). Returns integer
    codes [n, k] (original column order), the group parameters, and the damping used."""
    p = prepared if prepared is not None else prepare_hessian(h, act_order, damp)
    order, upper = p.order, p.upper
    w = np.array(w, dtype=np.float64)
    w[:, p.dead] = 0.0
    w = w[:, order]
    n, k = w.shape
    n_groups = -(-k // group)
    scale = np.zeros((n, n_groups), np.float32)
    offset = np.zeros((n, n_groups), np.float32)
    have = np.zeros(n_groups, bool)
    position = np.empty(k, np.int64)                # where each original column sits in `order`
    position[order] = np.arange(k)
    codes = np.zeros((n, k), np.int8)
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        err = np.zeros((n, b1 - b0))
        for j in range(b0, b1):
            col = order[j]
            g = col // group
            if not have[g]:                         # the group's parameters, from current weights
                members = position[g * group:min((g + 1) * group, k)]
                scale[:, g], offset[:, g] = params_for(w[:, members].astype(np.float32), wtype)
                have[g] = True
            q = codes_for(w[:, j], scale[:, g], offset[:, g], wtype)
            codes[:, col] = q
            e = (w[:, j] - (q * scale[:, g].astype(np.float64) + offset[:, g])) / upper[j, j]
            w[:, j:b1] -= np.outer(e, upper[j, j:b1])
            err[:, j - b0] = e
        w[:, b1:] -= err @ upper[b0:b1, b1:]
    return codes, GroupParams(wtype, group, scale, offset), p.damp
