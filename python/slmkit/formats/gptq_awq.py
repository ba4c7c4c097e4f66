"""GPTQ and AWQ checkpoints: Hugging Face folders whose config.json quantization_config has
quant_method "gptq" or "awq", each quantised linear stored as packed int32 `qweight` and `qzeros`
plus fp16 `scales` (and, for GPTQ, `g_idx`).

  GPTQ  qweight [k/p, n]: p = 32/bits codes per int32 along the INPUT dim (code of input i*p + j
        at bit j*bits); qzeros [groups, n/p] packed along the output dim the same way; scales
        [groups, n]; g_idx [k] the group of each input. value = (q - z)·s. checkpoint_format
        "gptq" (v1) stores z - 1, "gptq_v2" stores z.
  AWQ   ("gemm" layout) qweight [k, n/8] and qzeros [groups, n/8] packed along the OUTPUT dim,
        nibble i of a word holding column 8c + (0, 2, 4, 6, 1, 3, 5, 7)[i]; scales [groups, n];
        value = (q - z)·s.

Where groups hold whole 32-value blocks in input order (g_idx trivial) the weight becomes ggml
blocks exactly (see int_blocks: q4_0 for a symmetric 4-bit weight, q4_1 otherwise with m = -z·s
rounded to fp16, q8_0 for symmetric 8-bit) so the C kernels run it. Anything else (act-order
g_idx, groups not a multiple of 32, asymmetric 8-bit, 2-bit) is dequantised to f16 with a warning.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoint import Tensor
from ..errors import ModelFormatError, UnsupportedModelError
from .int_blocks import float_tensors, read_safetensors_parts, tensor_from_codes, warn_dequantised

AWQ_PACK_ORDER = np.array([0, 2, 4, 6, 1, 3, 5, 7])     # nibble i holds column AWQ_PACK_ORDER[i]
_PARTS = ("qweight", "qzeros", "scales", "g_idx", "bias")


def _unpack_rows(packed: np.ndarray, bits: int) -> np.ndarray:
    """int32 [r, c] with 32/bits codes per word -> uint8 [r, c, 32/bits], code j at bit j*bits."""
    shifts = np.arange(0, 32, bits, dtype=np.uint32)
    words = np.asarray(packed).view(np.uint32)
    return ((words[..., None] >> shifts) & np.uint32((1 << bits) - 1)).astype(np.uint8)


def unpack_gptq(qweight, qzeros, bits: int, v1: bool) -> tuple[np.ndarray, np.ndarray]:
    """codes uint8 [n, k] (output rows), zeros int16 [groups, n]."""
    kp, n = qweight.shape
    codes = _unpack_rows(qweight, bits)                  # [k/p, n, p]
    codes = codes.transpose(0, 2, 1).reshape(kp * (32 // bits), n).T
    zeros = _unpack_rows(qzeros, bits).reshape(qzeros.shape[0], -1).astype(np.int16)
    return np.ascontiguousarray(codes), zeros + 1 if v1 else zeros


def unpack_awq(qweight, qzeros) -> tuple[np.ndarray, np.ndarray]:
    """codes uint8 [n, k], zeros int16 [groups, n] of AWQ's GEMM layout (4-bit)."""
    def columns(packed):
        nib = _unpack_rows(packed, 4)                     # [r, n/8, 8], nibble i
        out = np.empty_like(nib)
        out[..., AWQ_PACK_ORDER] = nib                    # column AWQ_PACK_ORDER[i] <- nibble i
        return out.reshape(packed.shape[0], -1)
    return np.ascontiguousarray(columns(qweight).T), columns(qzeros).astype(np.int16)


def _gptq_groups(g_idx, k: int, group_size: int, n_groups: int) -> np.ndarray:
    if g_idx is not None:
        g = np.asarray(g_idx, np.int64)
    else:
        g = np.arange(k) // (group_size if group_size > 0 else k)
    if g.shape != (k,) or g.min() < 0 or g.max() >= n_groups:
        raise ModelFormatError(f"g_idx does not map {k} inputs to {n_groups} groups")
    return g


def read_gptq_awq(files: list[Path], qconfig: dict, folder) -> dict[str, Tensor]:
    """The tensors of a GPTQ/AWQ folder (quantised linears converted, the rest as stored)."""
    method = qconfig.get("quant_method")
    bits = int(qconfig.get("bits", qconfig.get("w_bit", 4)))
    group_size = int(qconfig.get("group_size", qconfig.get("q_group_size", 128)))
    if method == "gptq":
        fmt = qconfig.get("checkpoint_format", "gptq")
        if fmt not in ("gptq", "gptq_v2"):
            raise UnsupportedModelError(f"{folder}: GPTQ checkpoint_format {fmt!r} is not supported "
                                        f"(slmkit reads 'gptq' and 'gptq_v2')")
        if bits not in (2, 4, 8):
            raise UnsupportedModelError(f"{folder}: {bits}-bit GPTQ is not supported (2, 4 or 8)")
        v1 = fmt == "gptq"
    else:
        version = str(qconfig.get("version", "gemm")).lower()
        if version != "gemm" or bits != 4:
            raise UnsupportedModelError(f"{folder}: AWQ version {version!r} with {bits} bits is not "
                                        f"supported (slmkit reads 4-bit 'gemm' checkpoints)")
        if qconfig.get("zero_point") is False:
            raise UnsupportedModelError(f"{folder}: AWQ without zero points is not supported")

    raw, dtypes = read_safetensors_parts(files)

    tensors: dict[str, Tensor] = {}
    dequantised: list[str] = []
    bases = sorted(n[: -len(".qweight")] for n in raw if n.endswith(".qweight"))
    used = set()
    for base in bases:
        part = {p: raw.get(f"{base}.{p}") for p in _PARTS}
        used.update(f"{base}.{p}" for p in _PARTS)
        if part["qzeros"] is None or part["scales"] is None:
            raise ModelFormatError(f"{folder}: {base}.qweight without qzeros/scales")
        name = f"{base}.weight"
        try:
            if method == "gptq":
                codes, zeros = unpack_gptq(part["qweight"], part["qzeros"], bits, v1)
            else:
                codes, zeros = unpack_awq(part["qweight"], part["qzeros"])
            n, k = codes.shape
            scales = np.asarray(part["scales"], np.float32)
            if scales.shape[1] != n or zeros.shape != scales.shape:
                raise ModelFormatError(f"scales {list(scales.shape)} / zeros {list(zeros.shape)} do not "
                                       f"fit a weight of {n} outputs")
            groups = _gptq_groups(part["g_idx"] if method == "gptq" else None, k,
                                  group_size, scales.shape[0])
        except (ValueError, IndexError) as e:
            raise ModelFormatError(f"{folder}: {base}: malformed {method} tensors ({e})") from None
        tensors[name] = tensor_from_codes(name, codes, zeros.T, scales.T, groups, bits, dequantised)
        bias = part["bias"]
        if bias is not None:
            b = np.asarray(bias, np.float32)
            if np.any(b != 0):                     # quantisers often store all-zero biases
                tensors[f"{base}.bias"] = Tensor.from_float(f"{base}.bias", b, "f32")
    tensors.update(float_tensors(raw, dtypes, used, folder))
    warn_dequantised(folder, dequantised, f"{method} weight(s)",
                     f"act-order g_idx, groups not whole 32-value blocks, or {bits}-bit with zero points")
    return tensors
