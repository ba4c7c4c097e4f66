"""llama2.c checkpoints (.bin): a header of 7 int32, then float32 weights in a fixed order.

Header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative when the output
classifier is a separate tensor rather than the shared embedding), seq_len. The q/k rows are in
Meta's interleaved-RoPE order, which we keep (config.rope_interleaved = True): no copy, the file
is memory-mapped.
"""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint, ModelConfig, Tensor
from ..errors import ModelFormatError

HEADER = struct.Struct("<7i")


def looks_like_llama2c(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size < HEADER.size:
        return False
    with open(path, "rb") as f:
        dim, hidden, layers, heads, kv_heads, vocab, seq = HEADER.unpack(f.read(HEADER.size))
    return (0 < dim < 1 << 16 and 0 < hidden < 1 << 18 and 0 < layers < 1024 and 0 < heads <= dim
            and 0 < kv_heads <= heads and 0 < abs(vocab) < 1 << 24 and 0 < seq < 1 << 24)


def read_llama2c(path, tokenizer=None) -> Checkpoint:
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER.size:
        raise ModelFormatError(f"{path}: truncated llama2.c checkpoint ({size} bytes)")
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = HEADER.unpack(mapped[:HEADER.size])
    if not looks_like_llama2c(path):
        raise ModelFormatError(f"{path}: not a llama2.c checkpoint (header {dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len})")
    shared = vocab > 0
    vocab = abs(vocab)
    head_dim = dim // n_heads
    kv_dim = n_kv * head_dim
    # (name pattern, per-layer?, shape)
    layout = [
        ("model.embed_tokens.weight", False, (vocab, dim)),
        ("model.layers.{}.input_layernorm.weight", True, (dim,)),
        ("model.layers.{}.self_attn.q_proj.weight", True, (dim, dim)),
        ("model.layers.{}.self_attn.k_proj.weight", True, (kv_dim, dim)),
        ("model.layers.{}.self_attn.v_proj.weight", True, (kv_dim, dim)),
        ("model.layers.{}.self_attn.o_proj.weight", True, (dim, dim)),
        ("model.layers.{}.post_attention_layernorm.weight", True, (dim,)),
        ("model.layers.{}.mlp.gate_proj.weight", True, (hidden, dim)),
        ("model.layers.{}.mlp.down_proj.weight", True, (dim, hidden)),
        ("model.layers.{}.mlp.up_proj.weight", True, (hidden, dim)),
        ("model.norm.weight", False, (dim,)),
        (None, False, (seq_len, head_dim // 2)),  # freq_cis_real (unused: RoPE is computed)
        (None, False, (seq_len, head_dim // 2)),  # freq_cis_imag
    ]
    if not shared:
        layout.append(("lm_head.weight", False, (vocab, dim)))
    needed = HEADER.size + 4 * sum(
        int(np.prod(shape)) * (n_layers if per_layer else 1) for _, per_layer, shape in layout)
    if size < needed:
        raise ModelFormatError(f"{path}: truncated llama2.c checkpoint: the header implies "
                               f"{needed} bytes, the file has {size}")
    floats = np.frombuffer(mapped, dtype=np.float32, offset=HEADER.size)
    tensors: dict[str, Tensor] = {}
    offset = 0
    for pattern, per_layer, shape in layout:
        count = int(np.prod(shape))
        for layer in range(n_layers if per_layer else 1):
            if pattern is not None:
                name = pattern.format(layer)
                tensors[name] = Tensor(name, shape, "f32", floats[offset:offset + count].reshape(shape))
            offset += count
    config = ModelConfig(
        architecture="LlamaForCausalLM", vocab_size=vocab, hidden_size=dim,
        intermediate_size=hidden, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        num_key_value_heads=n_kv, max_position_embeddings=seq_len, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=shared, rope_interleaved=True,
        bos_token_id=1, eos_token_id=2)
    if tokenizer is None:
        for candidate in ("tokenizer.bin", "tok{}.bin".format(vocab)):
            if (path.parent / candidate).is_file():
                tokenizer = path.parent / candidate
                break
    return Checkpoint(config=config, tensors=tensors, source=str(path), tokenizer=tokenizer)
