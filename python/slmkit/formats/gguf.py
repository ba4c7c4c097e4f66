"""GGUF files (llama.cpp): metadata + tensors, read with the `gguf` package's memory-mapped reader.

Tensors in a format slmkit runs (F32, F16, BF16, Q8_0, Q4_0, Q4_1) become zero-copy views of the
memory map: a weight with GGUF ne = [k, n] is n rows of k values, i.e. numpy shape [n, k], stored
as uint8 [n, row_bytes] for block formats. Other types (K-quants, IQ*, Q5_*) are dequantised and
requantised to the nearest supported block format, with a warning naming them, or refused when
the caller asks for that.

Q/K row order: llama.cpp's converter permutes the q/k rows of Llama-family models into the
interleaved-RoPE order (pairs (2j, 2j+1)), and runs them with its "normal" RoPE; Qwen2 is stored
unpermuted in the Hugging Face rotate-half order and run with "NEOX" RoPE. We keep the rows as they
are and set config.rope_interleaved by architecture.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import quant
from ..checkpoint import Checkpoint, ModelConfig, Tensor
from ..errors import ModelFormatError, UnsupportedModelError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class _Arch:
    hf_name: str
    rope_interleaved: bool      # llama.cpp rope type: NORM (interleaved) or NEOX (rotate-half)
    attention_bias: bool = False
    default_rms_eps: float = 1e-5


ARCHITECTURES = {
    "llama": _Arch("LlamaForCausalLM", rope_interleaved=True),
    "mistral": _Arch("MistralForCausalLM", rope_interleaved=True),
    "qwen2": _Arch("Qwen2ForCausalLM", rope_interleaved=False, attention_bias=True,
                   default_rms_eps=1e-6),
}

# GGUF tensor name -> Hugging Face name
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")

# GGML type name -> slmkit storage type, for types kept as they are
NATIVE_TYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16",
                "Q8_0": "q8_0", "Q4_0": "q4_0", "Q4_1": "q4_1"}
# Types that are not weights at all: refused rather than converted.
_INTEGER_TYPES = {"I8", "I16", "I32", "I64"}


def hf_tensor_name(gguf_name: str) -> str | None:
    """The Hugging Face name of a GGUF tensor, or None when slmkit has no use for it."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    m = _LAYER_RE.match(gguf_name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"
    return None


def is_gguf_file(path) -> bool:
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


# ---- the reader ----------------------------------------------------------------------------

def _fast_reader_class():
    """gguf.GGUFReader, faster on files with large vocabularies.

    The stock reader indexes an np.memmap once per metadata array element (~250k times for a
    49k-token vocabulary), and np.memmap's Python-level __array_finalize__ makes that take
    seconds. We give it a plain ndarray view of the same map instead (same bytes, no copy), and
    build arrays of strings/scalars with the same ReaderField parts the stock code produces."""
    from gguf.gguf_reader import GGUFReader, GGUFValueType

    class FastGGUFReader(GGUFReader):
        @property
        def data(self):
            return self._plain_data

        @data.setter
        def data(self, value):
            self.memmap = value                       # keeps the map, and its file name, at hand
            self._plain_data = value.view(np.ndarray)

        def _get_field_parts(self, orig_offs, raw_type):
            if GGUFValueType(raw_type) != GGUFValueType.ARRAY or self.byte_order != "I":
                return super()._get_field_parts(orig_offs, raw_type)
            data = self._plain_data
            itype_part = data[orig_offs:orig_offs + 4].view(np.uint32)
            count_part = data[orig_offs + 4:orig_offs + 12].view(np.uint64)
            itype, count = GGUFValueType(int(itype_part[0])), int(count_part[0])
            offs = orig_offs + 12
            parts = [itype_part, count_part]
            if itype == GGUFValueType.STRING:
                raw = memoryview(data)
                from_bytes = int.from_bytes
                for _ in range(count):
                    n = from_bytes(raw[offs:offs + 8], "little")
                    parts.append(data[offs:offs + 8].view(np.uint64))
                    parts.append(data[offs + 8:offs + 8 + n])
                    offs += 8 + n
                if offs > data.shape[0]:
                    raise ValueError("array of strings runs past the end of the file")
                return offs - orig_offs, parts, list(range(3, 2 + 2 * count, 2)), [
                    GGUFValueType.ARRAY, GGUFValueType.STRING] if count else [GGUFValueType.ARRAY]
            np_type = self.gguf_scalar_to_np.get(itype)
            if np_type is None:                        # nested arrays: rare, keep the stock path
                return super()._get_field_parts(orig_offs, raw_type)
            size = np.dtype(np_type).itemsize
            values = data[offs:offs + size * count].view(np_type)
            if values.shape[0] != count:
                raise ValueError("array runs past the end of the file")
            parts += [values[i:i + 1] for i in range(count)]
            types = [GGUFValueType.ARRAY, itype] if count else [GGUFValueType.ARRAY]
            return offs + size * count - orig_offs, parts, list(range(2, 2 + count)), types

    return FastGGUFReader


_READER_CLASS = None


def open_gguf(path):
    """A gguf.GGUFReader (memory-mapped) for path; ModelFormatError naming the file when it is
    not a readable GGUF file. Tokenizers can take their vocabulary from the same reader."""
    global _READER_CLASS
    path = Path(path)
    if not is_gguf_file(path):
        raise ModelFormatError(f"{path}: not a GGUF file (it does not start with b'GGUF')")
    if _READER_CLASS is None:
        _READER_CLASS = _fast_reader_class()
    try:
        return _READER_CLASS(path, "r")
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError, TypeError) as e:
        raise ModelFormatError(f"{path}: corrupt or truncated GGUF file ({type(e).__name__}: {e})") from None


def _float32_field(value) -> float:
    """A float32 metadata value as the decimal it was written from (9.99999975e-06 -> 1e-05)."""
    return float(str(np.float32(value)))


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception as e:                              # a field whose bytes do not decode
        raise ModelFormatError(f"{reader.memmap.filename}: corrupt metadata {key!r} ({e})") from None


# ---- tensor types --------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorPlan:
    """How one GGUF tensor is read: its stored GGML type and the slmkit type it runs as."""

    gguf_name: str
    name: str | None            # Hugging Face name, None when unused
    shape: tuple[int, ...]      # numpy order: [rows, k]
    stored_type: str            # GGML type name, e.g. "Q4_1", "Q6_K"
    run_as: str | None          # slmkit storage type, None when unused or refused
    action: str                 # "view", "convert", "skip" or "refuse"


def _conversion_target(ggml_type) -> str:
    """The supported block format nearest to a GGML type: q8_0 for 5 bits and up, q4_1 below."""
    from gguf.constants import GGML_QUANT_SIZES
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    bits = 8.0 * type_size / block_size
    return "q8_0" if bits >= 5.0 else "q4_1"


def plan_tensor(t) -> TensorPlan:
    """What read_gguf does with one gguf ReaderTensor."""
    type_name = t.tensor_type.name
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    name = hf_tensor_name(t.name)
    if name is None:
        return TensorPlan(t.name, None, shape, type_name, None, "skip")
    if len(shape) == 1:                                 # norms and biases: float32
        if type_name in _INTEGER_TYPES:
            return TensorPlan(t.name, name, shape, type_name, None, "refuse")
        return TensorPlan(t.name, name, shape, type_name, "f32",
                          "view" if type_name == "F32" else "convert")
    if type_name in NATIVE_TYPES:
        return TensorPlan(t.name, name, shape, type_name, NATIVE_TYPES[type_name], "view")
    if type_name in _INTEGER_TYPES:
        return TensorPlan(t.name, name, shape, type_name, None, "refuse")
    if type_name == "F64":
        return TensorPlan(t.name, name, shape, type_name, "f32", "convert")
    return TensorPlan(t.name, name, shape, type_name, _conversion_target(t.tensor_type), "convert")


def describe_tensors(path) -> list[TensorPlan]:
    """Per tensor of a GGUF file: stored type and what slmkit will run it as (`slmkit info`)."""
    reader = open_gguf(path)
    return [plan_tensor(t) for t in reader.tensors]


def _dequantize(t, path) -> np.ndarray:
    from gguf import quants
    try:
        values = quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
        raise UnsupportedModelError(
            f"{path}: tensor {t.name!r} has GGML type {t.tensor_type.name}, which slmkit cannot "
            f"dequantise; re-export the model as Q8_0, Q4_0, Q4_1, F16 or F32") from None
    return np.asarray(values, dtype=np.float32)


def _read_tensor(t, plan: TensorPlan, path) -> Tensor:
    shape = plan.shape
    if plan.action == "view":
        data = t.data
        if plan.run_as == "bf16":                       # the reader exposes BF16 as raw bytes
            data = data.view(np.uint16).reshape(shape)
        return Tensor(plan.name, shape, plan.run_as, data)
    if plan.run_as in quant.FLOAT_TYPES:
        values = t.data if t.tensor_type.name in ("F32", "F16", "F64") else _dequantize(t, path)
        return Tensor.from_float(plan.name, np.asarray(values, np.float32).reshape(shape), plan.run_as)
    values = _dequantize(t, path).reshape(shape)
    return Tensor(plan.name, shape, plan.run_as, quant.from_float32(values, plan.run_as))


# ---- the checkpoint ------------------------------------------------------------------------

def _config(reader, path, tensors: dict[str, Tensor]) -> tuple[ModelConfig, dict]:
    arch_name = _field(reader, "general.architecture")
    if arch_name not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path}: GGUF architecture {arch_name!r} is not supported; slmkit reads "
            f"{', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[arch_name]

    def need(key):
        value = _field(reader, f"{arch_name}.{key}")
        if value is None:
            raise ModelFormatError(f"{path}: metadata {arch_name}.{key} is missing")
        return value

    scaling = _field(reader, f"{arch_name}.rope.scaling.type")
    if scaling not in (None, "none") and not (
            scaling == "linear" and _field(reader, f"{arch_name}.rope.scaling.factor", 1.0) == 1.0):
        raise UnsupportedModelError(f"{path}: RoPE scaling {scaling!r} is not supported yet")
    if "rope_freqs.weight" in {t.name for t in reader.tensors}:
        raise UnsupportedModelError(f"{path}: per-dimension RoPE frequency factors "
                                    f"(rope_freqs.weight, Llama 3.1 scaling) are not supported yet")

    hidden = int(need("embedding_length"))
    heads = int(need("attention.head_count"))
    kv_heads = int(_field(reader, f"{arch_name}.attention.head_count_kv", heads))
    head_dim = _field(reader, f"{arch_name}.attention.key_length")
    rope_dim = _field(reader, f"{arch_name}.rope.dimension_count")
    head_dim = int(head_dim if head_dim is not None else rope_dim if rope_dim is not None
                   else hidden // heads)
    if rope_dim is not None and int(rope_dim) != head_dim:
        raise UnsupportedModelError(f"{path}: partial RoPE ({arch_name}.rope.dimension_count="
                                    f"{rope_dim} < head_dim {head_dim}) is not supported")
    embed = tensors.get("model.embed_tokens.weight")
    if embed is None:
        raise ModelFormatError(f"{path}: missing tensor 'token_embd.weight'")
    vocab = embed.shape[0]
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is not None and len(tokens.data) > vocab:
        raise ModelFormatError(f"{path}: the vocabulary has {len(tokens.data)} tokens but "
                               f"token_embd.weight only {vocab} rows")

    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    eot = _field(reader, "tokenizer.ggml.eot_token_id")
    eos_ids = [i for i in (eos, eot) if i is not None]
    eos_ids = list(dict.fromkeys(eos_ids))               # unique, in order
    config = ModelConfig(
        architecture=arch.hf_name,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(need("feed_forward_length")),
        num_hidden_layers=int(need("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=int(_field(reader, f"{arch_name}.context_length", 2048)),
        rms_norm_eps=_float32_field(_field(reader, f"{arch_name}.attention.layer_norm_rms_epsilon",
                                  arch.default_rms_eps)),
        rope_theta=_float32_field(_field(reader, f"{arch_name}.rope.freq_base", 10000.0)),
        tie_word_embeddings="lm_head.weight" not in tensors,
        attention_bias=arch.attention_bias or "model.layers.0.self_attn.q_proj.bias" in tensors,
        head_dim=head_dim,
        rope_interleaved=arch.rope_interleaved,
        bos_token_id=None if bos is None else int(bos),
        eos_token_id=None if not eos_ids else eos_ids[0] if len(eos_ids) == 1 else eos_ids,
    )
    extra = {
        "gguf_architecture": arch_name,
        "chat_template": _field(reader, "tokenizer.chat_template"),
        "special_token_ids": {k: int(v) for k in ("bos", "eos", "eot", "eom", "unknown", "padding")
                              if (v := _field(reader, f"tokenizer.ggml.{k}_token_id")) is not None},
        "add_bos_token": _field(reader, "tokenizer.ggml.add_bos_token"),
        "tokenizer_model": _field(reader, "tokenizer.ggml.model"),
        "model_name": _field(reader, "general.name"),
        "file_type": _field(reader, "general.file_type"),
    }
    return config, extra


def read_gguf(path, convert_unsupported: bool = True) -> Checkpoint:
    """The Checkpoint in a GGUF file; weights are views of its memory map.

    convert_unsupported  convert tensor types slmkit does not run (K-quants, IQ*, Q5_*) to the
                         nearest supported block format, with a warning; False: refuse them
    """
    path = Path(path)
    reader = open_gguf(path)
    file_size = reader.memmap.shape[0]
    tensors: dict[str, Tensor] = {}
    converted: list[str] = []
    skipped: list[str] = []
    stored_types: dict[tuple[str, str], int] = {}
    for t in reader.tensors:
        end = t.data_offset + t.n_bytes
        if end > file_size or t.data.nbytes != t.n_bytes:
            raise ModelFormatError(f"{path}: truncated GGUF file: tensor {t.name!r} needs bytes up "
                                   f"to {end}, the file has {file_size}")
        plan = plan_tensor(t)
        key = f"{plan.stored_type} -> {plan.run_as}" if plan.action == "convert" else plan.stored_type
        stored_types[(key, plan.action)] = stored_types.get((key, plan.action), 0) + 1
        if plan.action == "skip":
            skipped.append(t.name)
            continue
        if plan.action == "refuse" or (plan.action == "convert" and plan.run_as not in quant.FLOAT_TYPES
                                       and not convert_unsupported):
            raise UnsupportedModelError(
                f"{path}: tensor {t.name!r} has GGML type {plan.stored_type}, which slmkit does not "
                f"run; supported: {', '.join(NATIVE_TYPES)}"
                + ("" if plan.action == "refuse" else " (pass convert_unsupported=True to convert it)"))
        if plan.action == "convert" and plan.run_as not in quant.FLOAT_TYPES:
            converted.append(f"{t.name} ({plan.stored_type} -> {plan.run_as})")
        try:
            tensors[plan.name] = _read_tensor(t, plan, path)
        except ModelFormatError as e:
            raise ModelFormatError(f"{path}: {e}") from None
    if converted:
        warnings.warn(f"{path}: {len(converted)} tensor(s) in types slmkit does not run were "
                      f"requantised: {', '.join(converted)}", stacklevel=2)
    config, extra = _config(reader, path, tensors)
    if config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    extra["gguf_reader"] = reader      # for GGUFTokenizer.from_reader: no second parse
    extra["converted_tensors"] = converted
    extra["skipped_tensors"] = skipped
    # (GGML type, or "TYPE -> slmkit type" when converted; "view", "convert" or "skip") -> count
    extra["gguf_types"] = stored_types
    return Checkpoint(config=config, tensors=tensors, source=str(path), tokenizer=path, extra=extra)
