"""llm-compressor's compressed-tensors checkpoints, format "pack-quantized" (integer weights).

A quantised linear `base` is stored as (per the public compressed-tensors spec):
  base.weight_packed      int32 [n, ceil(k·bits/32)]: signed codes q ∈ [-2^(b-1), 2^(b-1)) plus
                          2^(b-1), 32/bits per word along the input dim, element j at bit j·bits
  base.weight_scale       float [n, groups] (groups = k/group_size; 1 for "channel")
  base.weight_zero_point  int32 [ceil(n·bits/32), groups], asymmetric only: signed zero points
                          plus 2^(b-1), packed along the OUTPUT dim; symmetric: absent (zero)
  base.weight_shape       int [2] = [n, k]
  base.weight_g_idx       int32 [k], optional (activation order)
value = (q - zp)·scale. config.json: quantization_config {quant_method "compressed-tensors",
format "pack-quantized", config_groups {name: {targets, weights: {num_bits, type "int",
symmetric, strategy "group"|"channel", group_size}}}, ignore [...]}.

Reading: exact ggml blocks where groups hold whole 32-value blocks (see int_blocks), else f16.
Writing (slmkit -> compressed-tensors, one group of 32 per ggml block):
  q4_0 -> int4 symmetric: q = code - 8, scale = d                                 exact
  q8_0 -> int8 symmetric: q = code, scale = d                                     exact
  q4_1 -> int4 asymmetric: q = code - 8, scale = d, zp = round(-m/d) - 8; exact when -m/d
          is an integer (e.g. weights read from GPTQ/AWQ), otherwise each value moves by
          |m + zp'·d| <= d/2 (the largest change is measured and reported in a warning)
Embeddings, norms, lm_head and rows that are not whole blocks are written as floats (lm_head and
such linears are listed in `ignore`).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .. import quant
from ..checkpoint import Checkpoint, Tensor
from ..errors import ModelFormatError, UnsupportedModelError
from .int_blocks import (BLOCK, codes_from_blocks, float_tensors, read_safetensors_parts,
                         tensor_from_codes, warn_dequantised)

FORMAT = "pack-quantized"
_PARTS = ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx")


# ---- packing (spec: element j of a run at bit j·bits of its word) ---------------------------

def pack_int32(unsigned: np.ndarray, bits: int) -> np.ndarray:
    """uint [r, c] codes -> int32 [r, ceil(c·bits/32)], packed along the last dim."""
    per_word = 32 // bits
    r, c = unsigned.shape
    padded = np.zeros((r, -(-c // per_word) * per_word), np.uint32)
    padded[:, :c] = unsigned
    shifts = np.arange(per_word, dtype=np.uint32) * np.uint32(bits)
    words = (padded.reshape(r, -1, per_word) << shifts).sum(axis=-1, dtype=np.uint64)
    return words.astype(np.uint32).view(np.int32)


def unpack_int32(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """int32 [r, w] -> uint8 [r, count] unsigned codes (the inverse of pack_int32)."""
    shifts = np.arange(32 // bits, dtype=np.uint32) * np.uint32(bits)
    words = np.asarray(packed).view(np.uint32)
    codes = (words[..., None] >> shifts) & np.uint32((1 << bits) - 1)
    return codes.reshape(packed.shape[0], -1)[:, :count].astype(np.uint8)


# ---- reading -------------------------------------------------------------------------------

def _schemes(qconfig: dict, folder) -> list[tuple[list[str], dict]]:
    fmt = qconfig.get("format")
    out = []
    for name, group in (qconfig.get("config_groups") or {}).items():
        if not isinstance(group, dict):
            raise UnsupportedModelError(f"{folder}: config group {name!r} names a preset; slmkit "
                                        f"reads explicit weight schemes")
        group_fmt = group.get("format") or fmt
        if group_fmt != FORMAT:
            raise UnsupportedModelError(f"{folder}: compressed-tensors format {group_fmt!r} is not "
                                        f"supported (slmkit reads {FORMAT!r})")
        w = group.get("weights") or {}
        if w.get("type", "int") != "int" or w.get("num_bits") not in (4, 8) or \
                w.get("strategy") not in ("group", "channel"):
            raise UnsupportedModelError(
                f"{folder}: compressed-tensors weights {w.get('type')} {w.get('num_bits')}-bit "
                f"strategy {w.get('strategy')!r} are not supported (int4/int8, group or channel)")
        if group.get("input_activations"):
            raise UnsupportedModelError(f"{folder}: activation quantisation (group {name!r}) is not "
                                        f"supported; slmkit reads weight-only schemes")
        out.append((list(group.get("targets") or []), w))
    if not out:
        raise ModelFormatError(f"{folder}: quantization_config has no config_groups")
    return out


def _matches(module: str, target: str) -> bool:
    import re
    if target.startswith("re:"):
        return re.match(target[3:], module) is not None
    return target in (module, "Linear") or module.endswith("." + target)


def _scheme_for(module: str, schemes) -> dict:
    for targets, weights in schemes:
        if any(_matches(module, t) for t in targets):
            return weights
    if len(schemes) == 1:
        return schemes[0][1]
    raise ModelFormatError(f"no config group targets {module!r}")


def _float(array: np.ndarray, dtype: str) -> np.ndarray:
    return quant.bf16_to_f32(array) if dtype == "BF16" else np.asarray(array, np.float32)


def read_compressed_tensors(files: list[Path], qconfig: dict, folder) -> dict[str, Tensor]:
    schemes = _schemes(qconfig, folder)
    raw, dtypes = read_safetensors_parts(files)
    tensors: dict[str, Tensor] = {}
    dequantised: list[str] = []
    used = set()
    for base in sorted(n[: -len(".weight_packed")] for n in raw if n.endswith(".weight_packed")):
        used.update(f"{base}.{p}" for p in _PARTS)
        w = _scheme_for(base, schemes)
        bits, offset = int(w["num_bits"]), 1 << (int(w["num_bits"]) - 1)
        name = f"{base}.weight"
        try:
            shape = raw.get(f"{base}.weight_shape")
            if shape is None:
                raise ModelFormatError("weight_shape is missing")
            n, k = (int(v) for v in np.asarray(shape).reshape(-1))
            codes = unpack_int32(raw[f"{base}.weight_packed"], bits, k)        # q + offset
            scales = _float(raw[f"{base}.weight_scale"], dtypes[f"{base}.weight_scale"])
            scales = scales.reshape(n, -1)
            n_groups = scales.shape[1]
            zp = raw.get(f"{base}.weight_zero_point")
            if w.get("symmetric", True) or zp is None:
                if not w.get("symmetric", True):
                    raise ModelFormatError("an asymmetric scheme without weight_zero_point")
                zeros = np.full((n, n_groups), offset, np.int16)
            else:
                zeros = unpack_int32(np.ascontiguousarray(np.asarray(zp).T), bits, n).T.astype(np.int16)
            if codes.shape != (n, k) or zeros.shape != (n, n_groups):
                raise ModelFormatError(f"packed sizes do not fit weight_shape [{n}, {k}]")
            g_idx = raw.get(f"{base}.weight_g_idx")
            if g_idx is not None and np.asarray(g_idx).min() >= 0:
                groups = np.asarray(g_idx, np.int64)
            else:
                groups = np.arange(k) // (k if w["strategy"] == "channel" else int(w["group_size"]))
            if groups.shape != (k,) or groups.max() >= n_groups:
                raise ModelFormatError(f"groups do not fit {n_groups} scales per row")
        except (KeyError, ValueError, IndexError) as e:
            raise ModelFormatError(f"{folder}: {base}: malformed pack-quantized tensors ({e})") from None
        except ModelFormatError as e:
            raise ModelFormatError(f"{folder}: {base}: {e}") from None
        tensors[name] = tensor_from_codes(name, codes, zeros, scales, groups, bits, dequantised)
    tensors.update(float_tensors(raw, dtypes, used, folder))
    warn_dequantised(folder, dequantised, "weight(s)",
                     "groups not whole 32-value blocks in input order, or 8-bit with zero points")
    return tensors


# ---- writing -------------------------------------------------------------------------------

_SCHEMES = {  # slmkit block type -> compressed-tensors weight arguments
    "q4_0": {"num_bits": 4, "symmetric": True},
    "q4_1": {"num_bits": 4, "symmetric": False},
    "q8_0": {"num_bits": 8, "symmetric": True},
}


def _pack_weight(t: Tensor) -> tuple[dict[str, np.ndarray], float]:
    """compressed-tensors arrays of one block tensor, and the largest change of a value."""
    n, k = t.shape
    bits = _SCHEMES[t.wtype]["num_bits"]
    offset = 1 << (bits - 1)
    codes, d, m = codes_from_blocks(t.data, t.wtype, k)
    out = {"weight_scale": d.astype(np.float16), "weight_shape": np.array([n, k], np.int64)}
    change = 0.0
    if t.wtype == "q8_0":
        unsigned = codes.astype(np.int16) + offset                  # int8 code -> code + 128
    else:
        unsigned = codes                                            # q + 8 is the nibble itself
    if t.wtype == "q4_1":
        df, mf = d.astype(np.float32), m.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(df != 0, np.round(-mf / df), 0)
        z = np.clip(z, 0, 15)
        # within fp16 rounding of m (as for weights read from GPTQ/AWQ) counts as exact: the
        # integer zero point then gives the original (q - z)·s
        moved = np.abs(mf + z * df)
        moved = np.where(moved <= np.abs(mf) * 2.0 ** -10, 0.0, moved)
        change = float(moved.max()) if moved.size else 0.0
        # zero points are signed (z - 8), stored + 8, packed along the output dim
        out["weight_zero_point"] = pack_int32(z.astype(np.uint32).T, bits).T.copy()
    out["weight_packed"] = pack_int32(unsigned[:, :k].astype(np.uint32), bits)
    return out, change


def _rotate_half_rows(ckpt: Checkpoint) -> Checkpoint:
    from .gguf_write import rope_row_order
    cfg = ckpt.config
    orders = {"q_proj": rope_row_order(cfg.num_attention_heads, cfg.head_dim, False),
              "k_proj": rope_row_order(cfg.num_key_value_heads, cfg.head_dim, False)}
    tensors = {}
    for name, t in ckpt.tensors.items():
        proj = name.split(".")[-2] if name.startswith("model.layers.") else ""
        if proj in orders:
            t = Tensor(name, t.shape, t.wtype, np.ascontiguousarray(np.asarray(t.data)[orders[proj]]))
        tensors[name] = t
    import dataclasses
    return ckpt.replace(tensors=tensors, config=dataclasses.replace(cfg, rope_interleaved=False))


def write_compressed_tensors(ckpt: Checkpoint, out_dir, tokenizer_from=None) -> Path:
    """Write ckpt as a Hugging Face folder in compressed-tensors pack-quantized format (atomic)."""
    from .atomic import atomic_output_dir
    from .hf import _copy_tokenizer_files, write_hf_config
    from .safetensors_io import save_safetensors

    if ckpt.config.rope_interleaved:      # transformers and vLLM rotate halves: move q/k rows back
        ckpt = _rotate_half_rows(ckpt)
    arrays: dict[str, np.ndarray] = {}
    targets: dict[str, list[str]] = {w: [] for w in _SCHEMES}
    ignore, notes = [], []
    worst: dict[str, float] = {}
    for name, t in ckpt.tensors.items():
        is_linear = name.endswith("_proj.weight") or name == "lm_head.weight"
        if is_linear and t.wtype in _SCHEMES and t.shape[-1] % BLOCK == 0 and name != "lm_head.weight":
            base = name[: -len(".weight")]
            packed, change = _pack_weight(t)
            for part, array in packed.items():
                arrays[f"{base}.{part}"] = array
            targets[t.wtype].append(base)
            if change > 0:
                worst[base] = change
            continue
        if is_linear:
            ignore.append(name[: -len(".weight")])
            if t.wtype in quant.BLOCK_TYPES:
                notes.append(f"{name} ({t.wtype})")
        if t.wtype in quant.BLOCK_TYPES:
            arrays[name] = t.to_float32().astype(np.float16)
        elif t.wtype == "bf16":
            arrays[name] = t.to_float32()
        else:
            arrays[name] = np.asarray(t.data)
    if notes:
        warnings.warn(f"{ckpt.source}: written as f16 (lm_head, or rows that are not whole 32-value "
                      f"groups): {', '.join(notes)}", stacklevel=2)
    if worst:
        base, change = max(worst.items(), key=lambda kv: kv[1])
        warnings.warn(f"{ckpt.source}: {len(worst)} q4_1 weight(s) have minimums that are not whole "
                      f"steps of their scale; compressed-tensors zero points are integers, so values "
                      f"move by up to {change:.3g} (in {base})", stacklevel=2)
    groups = {}
    for wtype, modules in targets.items():
        if modules:
            groups[f"group_{len(groups)}"] = {
                "targets": modules,
                "weights": {"num_bits": _SCHEMES[wtype]["num_bits"], "type": "int",
                            "symmetric": _SCHEMES[wtype]["symmetric"], "strategy": "group",
                            "group_size": BLOCK, "dynamic": False, "actorder": None,
                            "observer": "minmax", "observer_kwargs": {}, "block_structure": None},
                "input_activations": None, "output_activations": None,
            }
    if not groups:
        raise UnsupportedModelError(f"{ckpt.source}: no q4_0/q4_1/q8_0 linear weights to write as "
                                    f"compressed-tensors; quantise the model first (slmkit quantize)")
    qconfig = {"quant_method": "compressed-tensors", "format": FORMAT, "config_groups": groups,
               "ignore": sorted(set(ignore) | ({"lm_head"} if "lm_head.weight" not in ckpt.tensors else set())),
               "kv_cache_scheme": None, "quantization_status": "compressed"}
    config = write_hf_config(ckpt.config, torch_dtype="float16")
    config["quantization_config"] = qconfig
    with atomic_output_dir(out_dir) as tmp:
        save_safetensors(arrays, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        _copy_tokenizer_files(tokenizer_from if tokenizer_from is not None else ckpt.tokenizer, tmp)
    return Path(out_dir)
