"""Group quantisation of weight rows, written into the kernels' 32-wide block formats.

A logical group of G input columns (G = 32, 64 or 128) shares one scale (and, for q4_1, one
minimum). The kernels only know 32-wide blocks (ggml's q8_0 / q4_0 / q4_1), so a group of 64 or
128 is stored as 2 or 4 blocks that repeat the group's scale and minimum: the kernels run it
unchanged, and the stored size stays that of group 32 while the information content (the
"effective" bits per weight) is that of group G. A row shorter than G is one group; the last group
of a row may be shorter.

Every value is  scale * q + offset  with integer q in [qmin, qmax]:
    q8_0  q in -127..127, offset 0               (scale = amax / 127)
    q4_0  q in -8..7,     offset 0               (scale = signed max / -8, as ggml)
    q4_1  q in 0..15,     offset = group minimum (scale = (max - min) / 15)
Scales and minima are rounded to float16 first, since that is what the blocks store.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checkpoint import Tensor
from ..quant import BLOCK_BYTES, BLOCK_SIZE

GROUP_SIZES = (32, 64, 128)
CODE_RANGE = {"q8_0": (-127, 127), "q4_0": (-8, 7), "q4_1": (0, 15)}
SCALE_BITS = {"q8_0": 16, "q4_0": 16, "q4_1": 32}     # per group: f16 scale (+ f16 minimum)
CODE_BITS = {"q8_0": 8, "q4_0": 4, "q4_1": 4}


def check_group(group: int) -> int:
    if group not in GROUP_SIZES:
        raise ValueError(f"group size must be one of {GROUP_SIZES}, got {group}")
    return group


def effective_bits(wtype: str, group: int) -> float:
    """Bits per weight the scheme needs (codes + one scale/minimum per group)."""
    return CODE_BITS[wtype] + SCALE_BITS[wtype] / group


def group_index(k: int, group: int) -> np.ndarray:
    """The group of each of k columns."""
    return np.arange(k) // group


def f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


@dataclass
class GroupParams:
    """Per (row, group) scale and offset of a [n, k] weight; scale 0 marks an all-zero group."""

    wtype: str
    group: int
    scale: np.ndarray      # [n, n_groups] float32 (float16-exact)
    offset: np.ndarray     # [n, n_groups] float32 (float16-exact; zero for q8_0 / q4_0)

    def columns(self, cols: slice | np.ndarray):
        """scale, offset broadcast to the given columns: [n, len(cols)]."""
        g = group_index(cols.stop, self.group)[cols] if isinstance(cols, slice) else np.asarray(cols) // self.group
        return self.scale[:, g], self.offset[:, g]


def params_for(w: np.ndarray, wtype: str, clip: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Scale and offset of each row of w[n, m] (one group each); clip (scalar or [n]) shrinks the
    range (clipping search)."""
    clip = np.broadcast_to(np.asarray(clip, dtype=np.float32), (w.shape[0],))
    if wtype == "q4_1":
        lo, hi = w.min(axis=1) * clip, w.max(axis=1) * clip
        return f16((hi - lo) / 15), f16(lo)
    if wtype == "q4_0":
        idx = np.abs(w).argmax(axis=1)
        signed_max = w[np.arange(w.shape[0]), idx] * clip
        return f16(signed_max / -8), np.zeros(w.shape[0], np.float32)
    if wtype == "q8_0":
        return f16(np.abs(w).max(axis=1) * clip / 127), np.zeros(w.shape[0], np.float32)
    raise ValueError(f"no group quantiser for {wtype!r}")


def codes_for(w: np.ndarray, scale: np.ndarray, offset: np.ndarray, wtype: str) -> np.ndarray:
    """Integer codes of w given broadcastable scale/offset (nearest grid point, clamped)."""
    qmin, qmax = CODE_RANGE[wtype]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale != 0, np.rint((w - offset) / np.where(scale != 0, scale, 1)), 0)
    return np.clip(q, qmin, qmax).astype(np.int8)


def dequant(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return (codes.astype(np.float32) * scale + offset).astype(np.float32)


def group_params(w: np.ndarray, wtype: str, group: int, clip=1.0) -> GroupParams:
    """Round-to-nearest parameters of every group of w[n, k]; clip: scalar or [n, n_groups]."""
    n, k = w.shape
    ng = -(-k // group)
    clip = np.broadcast_to(np.asarray(clip, dtype=np.float32), (n, ng))
    scale = np.empty((n, ng), np.float32)
    offset = np.empty((n, ng), np.float32)
    for g in range(ng):
        scale[:, g], offset[:, g] = params_for(w[:, g * group:(g + 1) * group], wtype, clip[:, g])
    return GroupParams(wtype, group, scale, offset)


def quantize_rtn(w: np.ndarray, wtype: str, group: int, clip=1.0) -> tuple[np.ndarray, GroupParams]:
    """Codes [n, k] and parameters of plain round-to-nearest group quantisation."""
    p = group_params(w, wtype, group, clip)
    s, o = p.columns(slice(0, w.shape[1]))
    return codes_for(w, s, o, wtype), p


def reference_dequantize(w: np.ndarray, wtype: str, group: int) -> np.ndarray:
    """What round-to-nearest group quantisation makes of w (the reference the tests compare to)."""
    codes, p = quantize_rtn(np.asarray(w, np.float32), wtype, group)
    s, o = p.columns(slice(0, w.shape[1]))
    return dequant(codes, s, o)


# ---- block packing ----------------------------------------------------------------------------

BLOCK_DTYPES = {
    "q8_0": np.dtype([("d", "<f2"), ("qs", "i1", 32)]),
    "q4_0": np.dtype([("d", "<f2"), ("qs", "u1", 16)]),
    "q4_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)]),
}
for _t, _dt in BLOCK_DTYPES.items():
    assert _dt.itemsize == BLOCK_BYTES[_t], _t


def pack(name: str, codes: np.ndarray, params: GroupParams) -> Tensor:
    """A block-format Tensor holding codes[n, k] with the group parameters repeated per block.
    Padding at the end of a row stores the code of 0 (the kernels pad activations with zeros)."""
    wtype, n, k = params.wtype, *codes.shape
    nb = -(-k // BLOCK_SIZE)
    padded = np.zeros((n, nb * BLOCK_SIZE), np.int8)
    padded[:, :k] = codes
    bgroup = (np.arange(nb) * BLOCK_SIZE) // params.group           # group of each block
    scale, offset = params.scale[:, bgroup], params.offset[:, bgroup]  # [n, nb]
    if k % BLOCK_SIZE:
        padded[:, k:] = codes_for(np.zeros((n, 1), np.float32), scale[:, -1:], offset[:, -1:], wtype)
    blocks = np.zeros((n, nb), BLOCK_DTYPES[wtype])
    blocks["d"] = scale.astype(np.float16)
    q = padded.reshape(n, nb, BLOCK_SIZE)
    if wtype == "q8_0":
        blocks["qs"] = q
    else:
        if wtype == "q4_0":
            q = q + 8
        else:
            blocks["m"] = offset.astype(np.float16)
        u = q.astype(np.uint8)
        blocks["qs"] = u[:, :, :16] | (u[:, :, 16:] << 4)
    data = blocks.view(np.uint8).reshape(n, nb * BLOCK_BYTES[wtype])
    return Tensor(name, (n, k), wtype, data)


def quantize_tensor(name: str, w: np.ndarray, wtype: str, group: int, clip=1.0) -> Tensor:
    """Round-to-nearest group quantisation of a float [n, k] weight into a block Tensor."""
    codes, p = quantize_rtn(np.asarray(w, np.float32), wtype, group, clip)
    return pack(name, codes, p)
