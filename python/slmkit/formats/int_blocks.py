"""Integer weight codes with per-group scales and zero points <-> slmkit's ggml blocks.

Other tools store a quantised weight as unsigned codes q, a scale s and a zero point z per group
of inputs, the value being (q - z)·s. When a group holds whole 32-value blocks this is exactly a
ggml block format:
  4-bit, z = 8 everywhere   -> q4_0: value = (q - 8)·d,  d = s
  4-bit, any z              -> q4_1: value = q·d + m,    d = s, m = -z·s (m rounded to fp16)
  8-bit, z = 128 everywhere -> q8_0: value = (q - 128)·d, d = s
The reverse (blocks -> codes, scales, zeros) feeds the compressed-tensors writer.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import quant
from ..checkpoint import Tensor
from ..errors import ModelFormatError

BLOCK = quant.BLOCK_SIZE
_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_Q4_1 = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])
_Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])
assert (_Q4_0.itemsize, _Q4_1.itemsize, _Q8_0.itemsize) == (18, 20, 34)


def _nibbles(codes: np.ndarray) -> np.ndarray:
    """[n, nb, 32] codes 0..15 -> [n, nb, 16] bytes: low nibble element j, high element j + 16."""
    c = codes.astype(np.uint8)
    return (c[..., :16] | (c[..., 16:] << 4)).astype(np.uint8)


def block_type_for(bits: int, zeros: np.ndarray | None) -> str | None:
    """The block format that holds (q - z)·s exactly, or None when none does."""
    if bits == 4:
        return "q4_0" if zeros is None or np.all(zeros == 8) else "q4_1"
    if bits == 8 and (zeros is None or np.all(zeros == 128)):
        return "q8_0"
    return None


def blocks_from_codes(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None,
                      bits: int) -> tuple[str, np.ndarray]:
    """codes  [n, k] unsigned codes (k a multiple of 32)
    scales [n, k/32] per block (rounded to fp16: the block scale is fp16)
    zeros  [n, k/32] per block, or None for the symmetric midpoint (8 or 128)
    -> (wtype, uint8 [n, row_bytes])"""
    n, k = codes.shape
    if k % BLOCK:
        raise ValueError(f"rows of {k} values are not whole {BLOCK}-value blocks")
    wtype = block_type_for(bits, zeros)
    if wtype is None:
        raise ValueError(f"{bits}-bit codes with these zero points have no exact block format")
    nb = k // BLOCK
    c = codes.reshape(n, nb, BLOCK)
    d = np.asarray(scales, np.float32).astype(np.float16).reshape(n, nb)
    if wtype == "q4_0":
        out = np.empty((n, nb), _Q4_0)
        out["qs"] = _nibbles(c)
    elif wtype == "q4_1":
        out = np.empty((n, nb), _Q4_1)
        z = np.asarray(zeros, np.float32).reshape(n, nb)
        out["m"] = (-z * d.astype(np.float32)).astype(np.float16)
        out["qs"] = _nibbles(c)
    else:
        out = np.empty((n, nb), _Q8_0)
        out["qs"] = (c.astype(np.int16) - 128).astype(np.int8)
    out["d"] = d
    return wtype, out.view(np.uint8).reshape(n, nb * out.dtype.itemsize)


def codes_from_blocks(data: np.ndarray, wtype: str, k: int):
    """(codes [n, kp], d f16 [n, kp/32], m f16 [n, kp/32] or None) of a block tensor with rows
    of k values (kp = k padded to 32): q4_0/q4_1 codes are 0..15 (q4_0's value (q - 8)·d, q4_1's
    q·d + m), q8_0 codes are int8 (value q·d)."""
    n = data.shape[0]
    nb = -(-k // BLOCK)
    dtype = {"q4_0": _Q4_0, "q4_1": _Q4_1, "q8_0": _Q8_0}[wtype]
    blocks = np.ascontiguousarray(data).view(dtype).reshape(n, nb)
    if wtype == "q8_0":
        return blocks["qs"].reshape(n, nb * BLOCK), blocks["d"].copy(), None
    qs = blocks["qs"]
    codes = np.concatenate([qs & 15, qs >> 4], axis=-1).reshape(n, nb * BLOCK)
    mins = blocks["m"].copy() if wtype == "q4_1" else None
    return codes, blocks["d"].copy(), mins


def tensor_from_codes(name: str, codes, zeros, scales, groups, bits: int, dequantised: list) -> Tensor:
    """A Tensor [n, k] from codes [n, k] (unsigned), zeros/scales [n, n_groups] and groups [k]
    (the group of each input): exact ggml blocks when every 32-value block lies in one group and
    a block format holds the zero points, else f16 values (its name appended to dequantised)."""
    n, k = codes.shape
    scales = np.asarray(scales, np.float32)
    if k % BLOCK == 0:
        starts = groups[::BLOCK]
        if np.array_equal(np.repeat(starts, BLOCK), groups) and block_type_for(bits, zeros) is not None:
            wtype, data = blocks_from_codes(codes, scales[:, starts], zeros[:, starts], bits)
            return Tensor(name, (n, k), wtype, data)
    dequantised.append(name)
    values = (codes.astype(np.float32) - zeros[:, groups]) * scales[:, groups]
    return Tensor.from_float(name, values, "f16")


def read_safetensors_parts(files) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of the given safetensors files (memory-mapped) and its dtype name."""
    from .safetensors_io import SafetensorsFile
    raw, dtypes = {}, {}
    for path in files:
        st = SafetensorsFile(path)
        for name in st.keys():
            raw[name], dtypes[name] = st.get(name), st.dtype(name)
    return raw, dtypes


def float_tensors(raw: dict, dtypes: dict, used: set, folder) -> dict[str, Tensor]:
    """The tensors that are not parts of a quantised weight (norms, embeddings...): float as
    stored."""
    from .safetensors_io import DTYPES
    tensors = {}
    for name, data in raw.items():
        if name in used:
            continue
        wtype = DTYPES[dtypes[name]][1]
        if wtype is None:
            raise ModelFormatError(f"{folder}: tensor {name!r} has dtype {dtypes[name]}, expected a float type")
        tensors[name] = Tensor(name, data.shape, wtype, data)
    return tensors


def warn_dequantised(folder, names: list[str], what: str, why: str) -> None:
    if names:
        warnings.warn(f"{folder}: {len(names)} {what} have no exact block format ({why}) and were "
                      f"dequantised to f16: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}",
                      stacklevel=4)
