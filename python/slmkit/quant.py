"""Storage formats of tensors: sizes, and conversion to and from float32.

Float formats are handled in numpy; block formats (q8_0, q4_0, q4_1: 32 values per block, ggml
layout) by the C kernels. A row of k values takes ceil(k/32) blocks, the tail zero-padded.
"""
from __future__ import annotations

import numpy as np

from .errors import UnsupportedModelError

FLOAT_TYPES = ("f32", "f16", "bf16")
BLOCK_TYPES = ("q8_0", "q4_0", "q4_1")
BLOCK_SIZE = 32
BLOCK_BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20}
FLOAT_BYTES = {"f32": 4, "f16": 2, "bf16": 2}
BITS_PER_WEIGHT = {"f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q4_0": 4.5, "q4_1": 5.0}


def check_type(wtype: str) -> str:
    if wtype not in FLOAT_TYPES and wtype not in BLOCK_TYPES:
        raise UnsupportedModelError(f"unknown tensor storage type {wtype!r}; slmkit supports "
                                    f"{', '.join(FLOAT_TYPES + BLOCK_TYPES)}")
    return wtype


def row_bytes(wtype: str, k: int) -> int:
    """Bytes of one row of k values."""
    check_type(wtype)
    if wtype in BLOCK_TYPES:
        return -(-k // BLOCK_SIZE) * BLOCK_BYTES[wtype]
    return k * FLOAT_BYTES[wtype]


def storage_nbytes(wtype: str, shape) -> int:
    shape = tuple(shape)
    if not shape:
        return FLOAT_BYTES[check_type(wtype)] if wtype in FLOAT_TYPES else 0
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return rows * row_bytes(wtype, shape[-1])


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round to nearest even, keeping NaNs NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def to_float32(data: np.ndarray, wtype: str, shape) -> np.ndarray:
    """Values of a stored tensor as a new float32 array of `shape`."""
    check_type(wtype)
    shape = tuple(shape)
    if wtype == "f32":
        return np.array(data, dtype=np.float32).reshape(shape)
    if wtype == "f16":
        return data.view(np.float16).astype(np.float32).reshape(shape)
    if wtype == "bf16":
        return bf16_to_f32(data.view(np.uint16)).reshape(shape)
    from . import _native

    k = shape[-1]
    return _native.dequantize(data, wtype, k).reshape(shape)


def from_float32(values: np.ndarray, wtype: str) -> np.ndarray:
    """Store float32 values (rows along the last axis) as wtype."""
    check_type(wtype)
    values = np.ascontiguousarray(values, dtype=np.float32)
    if wtype == "f32":
        return values
    if wtype == "f16":
        return values.astype(np.float16)
    if wtype == "bf16":
        return f32_to_bf16(values)
    from . import _native

    k = values.shape[-1]
    return _native.quantize(values.reshape(-1, k), wtype)
