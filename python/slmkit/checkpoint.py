"""Checkpoint: a model's config plus its named tensors, still in their storage formats.

Format readers (formats/) produce a Checkpoint; models (models/) consume one; compression
techniques (compress/) turn one Checkpoint into another; writers save one. Tensor names are the
Hugging Face Llama names (model.layers.N.self_attn.q_proj.weight, ...), whatever the file used.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import quant
from .errors import ModelFormatError


@dataclass
class Tensor:
    """One tensor in its storage format.

    shape  logical shape of the values, e.g. [n, k] for a weight of n rows of k inputs
    wtype  storage type name: "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"
    data   float32/float16 array of `shape`, a uint16 array of `shape` holding bf16 bits, or, for
           block formats, a uint8 array [n, row_bytes] (may be a read-only memory map)
    """

    name: str
    shape: tuple[int, ...]
    wtype: str
    data: np.ndarray

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        expected = quant.storage_nbytes(self.wtype, self.shape)
        if self.data.nbytes != expected:
            raise ModelFormatError(
                f"tensor {self.name!r}: {self.wtype} {list(self.shape)} needs {expected} bytes, "
                f"found {self.data.nbytes}")

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def to_float32(self) -> np.ndarray:
        return quant.to_float32(self.data, self.wtype, self.shape)

    @classmethod
    def from_float(cls, name: str, values: np.ndarray, wtype: str = "f32") -> "Tensor":
        data = quant.from_float32(np.asarray(values, dtype=np.float32), wtype)
        return cls(name, values.shape, wtype, data)


_POSITIVE_INTS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                  "head_dim")


def _positive_int(name: str, value) -> int:
    """value as an int > 0 (JSON may give 64.0), or a ModelFormatError naming the field."""
    if isinstance(value, (bool, str)) or value is None:
        ok = False
    else:
        try:
            ok = float(value).is_integer() and int(value) > 0
        except (TypeError, ValueError, OverflowError):
            ok = False
    if not ok:
        raise ModelFormatError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass
class ModelConfig:
    """The architecture numbers of a Llama-family decoder (HF config.json names)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    head_dim: int | None = None
    # True when q/k rows pair up dimensions (2j, 2j+1) (Meta / llama2.c / GGUF order), False for
    # the Hugging Face rotate-half order (j, j + head_dim/2).
    rope_interleaved: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self):
        if self.num_key_value_heads is None:            # config.json may say null: plain MHA
            self.num_key_value_heads = self.num_attention_heads
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if name == "head_dim" and value is None:
                continue
            setattr(self, name, _positive_int(name, value))
        for name in ("rms_norm_eps", "rope_theta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not np.isfinite(value) or value <= 0:
                raise ModelFormatError(f"{name} must be a positive number, got {value!r}")
            setattr(self, name, float(value))
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ModelFormatError(
                    f"hidden_size={self.hidden_size} is not a multiple of "
                    f"num_attention_heads={self.num_attention_heads} (and no head_dim is given)")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.head_dim % 2:
            raise ModelFormatError(f"head_dim={self.head_dim} is odd; RoPE needs an even head size")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ModelFormatError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        # null in a config.json means "not set": keep the default
        return cls(**{k: v for k, v in d.items() if k in fields and not (
            v is None and fields[k].default not in (None, dataclasses.MISSING))})


@dataclass
class Checkpoint:
    """Config + tensors (+ where the tokenizer comes from) of one model."""

    config: ModelConfig
    tensors: dict[str, Tensor]
    source: str = ""                          # path it was read from, for messages
    tokenizer: Any = None                     # a Tokenizer, or a path a tokenizer loads from
    quantization: dict[str, Any] | None = None  # how it was compressed, if it was
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelFormatError(f"{self.source or 'checkpoint'}: missing tensor {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def num_parameters(self) -> int:
        names = self.tensors
        n = sum(t.numel for t in names.values())
        return n

    def nonfinite_tensors(self, limit: int | None = None) -> list[str]:
        """Names of tensors holding NaN or inf (reads every weight: for error messages and
        checks, not for loading)."""
        bad = []
        for name, t in self.tensors.items():
            if not np.isfinite(t.to_float32()).all():
                bad.append(name)
                if limit is not None and len(bad) >= limit:
                    break
        return bad

    def replace(self, **changes) -> "Checkpoint":
        return dataclasses.replace(self, **changes)
