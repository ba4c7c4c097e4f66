"""The Llama family decoder (Llama, Mistral, Qwen2, SmolLM): RMSNorm, GQA attention with RoPE,
SiLU-gated FFN, residual adds. Written once against the Backend interface."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..backends.base import Backend
from ..checkpoint import Checkpoint, ModelConfig
from ..errors import ModelFormatError


@dataclass
class KVCache:
    """Per-layer key/value caches [n_kv_heads, max_seq, head_dim] and how many positions are
    filled. Reused across decode steps; `pos` moves forward as tokens are fed."""

    layers: list
    max_seq: int
    pos: int = 0
    handle: object = None      # what a compiled forward pass keeps about these arrays


    def reset(self, pos: int = 0) -> None:
        self.pos = pos

    def copy(self) -> "KVCache":
        """An independent copy, to branch a decode (e.g. beams that share a prompt)."""
        layers = [tuple(np.array(part, copy=True) for part in layer) for layer in self.layers]
        return KVCache(layers, self.max_seq, self.pos)


class LlamaModel:
    def __init__(self, ckpt: Checkpoint, backend: Backend, kv_cache: str = "f32",
                 prefill_act: str = "int16"):
        self.config = cfg = ckpt.config
        self.backend = backend
        kv_cache = "f32" if kv_cache is None else kv_cache                 # None: the default
        prefill_act = "int16" if prefill_act is None else prefill_act
        if kv_cache not in backend.kv_caches:
            raise ValueError(f"kv_cache={kv_cache!r}: the {backend.name} backend has "
                             f"{', '.join(backend.kv_caches)}")
        if prefill_act not in backend.prefill_acts:
            offers = (", ".join(backend.prefill_acts) if len(backend.prefill_acts) > 1
                      else "only its default precision")
            raise ValueError(f"prefill_act={prefill_act!r} is not available on the {backend.name} "
                             f"backend (it offers {offers}; int8 prefill is an option of the cpu "
                             f"backend's C forward pass)")
        self.kv_cache = kv_cache
        self.prefill_act = prefill_act
        check_shapes(ckpt)
        prep = backend.prepare
        name = "model.layers.{}.{}"
        self.embed_tokens = prep(ckpt["model.embed_tokens.weight"])
        self.layers = []
        for i in range(cfg.num_hidden_layers):
            t = lambda s: ckpt[name.format(i, s)]  # noqa: E731

            def proj(s):
                w = prep(t(s + ".weight"))
                bias_name = name.format(i, s + ".bias")
                return (w, prep(ckpt[bias_name])) if bias_name in ckpt else w

            self.layers.append({
                "attn_norm": prep(t("input_layernorm.weight")),
                "q": proj("self_attn.q_proj"), "k": proj("self_attn.k_proj"),
                "v": proj("self_attn.v_proj"), "o": proj("self_attn.o_proj"),
                "ffn_norm": prep(t("post_attention_layernorm.weight")),
                "gate": proj("mlp.gate_proj"), "up": proj("mlp.up_proj"),
                "down": proj("mlp.down_proj"),
            })
        self.norm = prep(ckpt["model.norm.weight"])
        if cfg.tie_word_embeddings:
            self.lm_head = self.embed_tokens
        else:
            self.lm_head = prep(ckpt["lm_head.weight"])
        self.compiled = backend.compile_llama(self)
        if prefill_act != self.prefill_act_in_effect:
            warnings.warn(f"prefill_act={prefill_act!r} changes nothing for this model: int8 "
                          f"activations apply to Q4_0/Q4_1/Q8_0 weights repacked at load by the "
                          f"AVX2 and AVX-512 kernels (not the generic kernel, SLMKIT_REPACK=0 or "
                          f"float weights); prompts run with int16 activations", stacklevel=4)

    @property
    def prefill_act_in_effect(self) -> str:
        """The activation precision prefill steps really run with ("int16" or "int8")."""
        return getattr(self.compiled, "prefill_act", "int16")

    def new_cache(self, max_seq: int | None = None) -> KVCache:
        cfg = self.config
        max_seq = min(max_seq or cfg.max_position_embeddings, cfg.max_position_embeddings)
        layers = [self.backend.new_kv_cache(cfg.num_key_value_heads, max_seq, cfg.head_dim,
                                            self.kv_cache)
                  for _ in range(cfg.num_hidden_layers)]
        return KVCache(layers, max_seq)

    def forward(self, ids, cache: KVCache, all_logits: bool = False, observe=None) -> np.ndarray:
        """Feed token ids at positions cache.pos.. and return logits: [len(ids), vocab] when
        all_logits, else [vocab] for the last position. observe(layer, name, x), if given, sees
        the input x of every linear layer (name: "q"/"k"/"v" share one input, "o", "gate"/"up",
        "down"), for calibration."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        m, start = ids.shape[0], cache.pos
        if m == 0:
            raise ValueError("forward: no token ids to feed")
        if start + m > cache.max_seq:
            raise ValueError(f"context overflow: {start} + {m} tokens exceed the context of "
                             f"{cache.max_seq}")
        if self.kv_cache != "f32" and (self.compiled is None or observe is not None):
            raise ValueError(f"a {self.kv_cache} KV cache runs only in the compiled forward "
                             f"pass (cpu backend, no observer)")
        if self.prefill_act != "int16" and (self.compiled is None or observe is not None):
            raise ValueError(f"{self.prefill_act} prefill activations run only in the compiled "
                             f"forward pass (cpu backend, no observer)")
        if self.compiled is not None and observe is None:
            self.check_ids(ids)
            logits = self.compiled.forward(ids, cache, all_logits)          # [m or 1, vocab]
            cache.pos = start + m
            return logits
        x = self.embed(ids)                                                 # [m, dim]
        for i in range(len(self.layers)):
            x = self.layer_forward(i, x, cache.layers[i], start, observe)
        cache.pos = start + m
        return self.head(x if all_logits else x[-1:], all_logits)

    def check_ids(self, ids: np.ndarray) -> None:
        vocab = self.config.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"token id out of range [0, {vocab}): {ids.min()}..{ids.max()}")

    def embed(self, ids: np.ndarray) -> np.ndarray:
        self.check_ids(ids)
        return self.backend.embed(self.embed_tokens, ids)

    def layer_forward(self, i: int, x: np.ndarray, kv, start: int, observe=None) -> np.ndarray:
        """One decoder layer over x[m, dim] at positions start..; updates x in place and returns
        it. kv is the layer's (k_cache, v_cache)."""
        cfg, B, layer = self.config, self.backend, self.layers[i]
        nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        pos = np.arange(start, start + x.shape[0], dtype=np.int32)
        h = B.rmsnorm(x, layer["attn_norm"], cfg.rms_norm_eps)              # [m, dim]
        if observe:
            observe(i, "q", h)
        q = B.matmul(h, layer["q"])                                         # [m, nh*hd]
        k = B.matmul(h, layer["k"])                                         # [m, nkv*hd]
        v = B.matmul(h, layer["v"])                                         # [m, nkv*hd]
        B.rope_(q, pos, nh, hd, cfg.rope_theta, cfg.rope_interleaved)
        B.rope_(k, pos, nkv, hd, cfg.rope_theta, cfg.rope_interleaved)
        att = B.attention(q, k, v, kv[0], kv[1], start, nh, nkv, hd)        # [m, nh*hd]
        if observe:
            observe(i, "o", att)
        B.add_(x, B.matmul(att, layer["o"]))
        h = B.rmsnorm(x, layer["ffn_norm"], cfg.rms_norm_eps)
        if observe:
            observe(i, "gate", h)
        g = B.silu_mul(B.matmul(h, layer["gate"]), B.matmul(h, layer["up"]))  # [m, ffn]
        if observe:
            observe(i, "down", g)
        B.add_(x, B.matmul(g, layer["down"]))
        return x

    def head(self, x: np.ndarray, all_logits: bool = True) -> np.ndarray:
        """Final norm and output projection: logits [rows, vocab], or [vocab] for one row."""
        x = self.backend.rmsnorm(x, self.norm, self.config.rms_norm_eps)
        logits = self.backend.matmul(x, self.lm_head)                       # [rows, vocab]
        return logits if all_logits else logits[0]


# Which checkpoint tensor each observed input feeds.
OBSERVED_INPUTS = {
    "q": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    shapes = {"model.embed_tokens.weight": (cfg.vocab_size, d), "model.norm.weight": (d,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, d)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
            p + "self_attn.q_proj.weight": (q, d), p + "self_attn.k_proj.weight": (kv, d),
            p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, q),
            p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
            p + "mlp.down_proj.weight": (d, f),
        })
        if cfg.attention_bias:
            shapes.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                           p + "self_attn.v_proj.bias": (kv,)})
    return shapes


def check_shapes(ckpt: Checkpoint) -> None:
    """One clear error naming every missing tensor or shape that contradicts the config."""
    problems = []
    for name, shape in expected_shapes(ckpt.config).items():
        if name not in ckpt.tensors:
            problems.append(f"missing tensor {name!r}")
        elif tuple(ckpt.tensors[name].shape) != shape:
            problems.append(f"tensor {name!r} has shape {list(ckpt.tensors[name].shape)}, "
                            f"config implies {list(shape)}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ModelFormatError(f"{ckpt.source}: " + "; ".join(problems[:5]) + more)
