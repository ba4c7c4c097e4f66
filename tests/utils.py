"""Helpers the tests share: where the real data lives, and small random models built here."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from slmkit.checkpoint import Checkpoint, ModelConfig, Tensor
from slmkit.tokenizers.base import Tokenizer


def kernel_variants() -> list[str]:
    """The kernel variants this CPU runs, reference first ("generic", then e.g. "avx2"); the
    best one is left active."""
    from slmkit import _native as nat
    out = nat.kernel_variants()
    nat.set_kernel(out[-1])
    return out


def shared_dir() -> Path | None:
    env = os.environ.get("SLMKIT_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"
    return path if path.is_dir() else None


def shared_path(*parts) -> Path:
    """A file under ../shared, or skip the test saying what is missing."""
    root = shared_dir()
    if root is None:
        pytest.skip("real data folder ../shared not found (set SLMKIT_SHARED to its path)")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found in the shared data folder")
    return path


class ByteTokenizer(Tokenizer):
    """Bytes as tokens (id = byte + 3), with BOS=1 and EOS=2: enough to drive random models."""

    def __init__(self, vocab_size: int = 259):
        self.vocab_size = vocab_size
        self.bos_id = 1
        self.eos_ids = frozenset({2})

    def _encode(self, text, parse_special):
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids):
        return bytes(i - 3 for i in ids if 3 <= i < 259).decode("utf-8", errors="replace")


def random_config(**overrides) -> ModelConfig:
    cfg = dict(architecture="LlamaForCausalLM", vocab_size=259, hidden_size=64,
               intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
               rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    cfg.update(overrides)
    return ModelConfig(**cfg)


def random_checkpoint(seed: int = 0, wtype: str = "f32", **overrides) -> Checkpoint:
    """A Llama-family checkpoint with random weights scaled so activations stay O(1)."""
    from slmkit.models.llama import expected_shapes

    cfg = random_config(**overrides)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(cfg).items():
        if len(shape) == 1:
            values = (1.0 + 0.1 * rng.standard_normal(shape)) if "norm" in name else 0.1 * rng.standard_normal(shape)
        else:
            values = rng.standard_normal(shape) / np.sqrt(shape[-1])
            if name == "model.embed_tokens.weight":
                values *= np.sqrt(shape[-1])
        tensors[name] = Tensor.from_float(name, values.astype(np.float32),
                                          wtype if len(shape) == 2 else "f32")
    return Checkpoint(config=cfg, tensors=tensors, source=f"random(seed={seed})",
                      tokenizer=ByteTokenizer(cfg.vocab_size))


def write_config(folder: Path, cfg: ModelConfig, **extra) -> None:
    d = {"architectures": [cfg.architecture]}
    d.update({k: v for k, v in cfg.to_dict().items() if k not in ("architecture", "rope_interleaved")})
    d.update(extra)
    (folder / "config.json").write_text(json.dumps(d))


def calibration_inputs(k: int, rows: int = 1024, seed: int = 0) -> np.ndarray:
    """Layer inputs [rows, k] like a transformer's: strongly correlated (most energy in k/8
    directions), with channels of very different loudness. float64."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k // 8)) @ rng.standard_normal((k // 8, k))
    x += 0.3 * rng.standard_normal((rows, k))
    return x * np.exp(rng.standard_normal(k))


def output_error(x: np.ndarray, w: np.ndarray, q: np.ndarray) -> float:
    """||X W^T - X Q^T||_F in float64: what a quantised linear layer gets wrong on inputs x."""
    return float(np.linalg.norm(x @ w.astype(np.float64).T - x @ q.astype(np.float64).T))
