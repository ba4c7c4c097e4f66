"""Unstructured magnitude pruning, registered with slmkit through its plugin hooks."""
from __future__ import annotations

import numpy as np

import slmkit
from slmkit.checkpoint import Checkpoint, Tensor
from slmkit.compress import Technique
from slmkit.compress.base import LINEAR_PATTERN, matches_any


def prune_rows(w: np.ndarray, sparsity: float) -> np.ndarray:
    """w[n, k] with the round(sparsity * k) smallest-|w| entries of every row set to zero."""
    n_zero = int(round(sparsity * w.shape[1]))
    out = w.copy()
    if n_zero:
        smallest = np.argpartition(np.abs(w), n_zero - 1, axis=1)[:, :n_zero]   # [n, n_zero]
        np.put_along_axis(out, smallest, 0.0, axis=1)
    return out


class MagnitudePrune(Technique):
    name = "magnitude-prune"
    description = "zero the smallest-magnitude weights of each row of every linear layer"

    def apply(self, ckpt: Checkpoint, sparsity: float = 0.5, keep=None, **_) -> Checkpoint:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        tensors = {}
        for name, t in ckpt.tensors.items():
            if LINEAR_PATTERN.search(name) and not matches_any(name, keep):
                # pruned in float, stored back in the tensor's own format
                t = Tensor.from_float(name, prune_rows(t.to_float32(), sparsity), t.wtype)
            tensors[name] = t
        return ckpt.replace(tensors=tensors)


@slmkit.hookimpl
def slmkit_register_techniques(register):
    register(MagnitudePrune())
