"""Calibration: token sequences from text files, and a layer-by-layer pass over them.

The pass keeps the hidden states of every calibration sequence at the input of the current layer
([tokens, dim] float32 in all), runs the layer once with an observer that accumulates, for each
linear input, the Gram matrix X^T X and the mean |x| per channel, lets a technique rewrite that
layer's tensors, and then (sequential, GPTQ's way) runs the rewritten (quantised) layer to get the
inputs of the next one, or (AutoAWQ's way) keeps the float layer's outputs from the first run.
Memory stays bounded by one layer's statistics plus the hidden states.
"""
from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint, Tensor
from ..models.llama import OBSERVED_INPUTS

log = logging.getLogger("slmkit.compress")

MIN_SEQ_TOKENS = 16
# Model layer-dict key of each linear (see LlamaModel.__init__), and of the two norms.
LAYER_KEYS = {"self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v",
              "self_attn.o_proj": "o", "mlp.gate_proj": "gate", "mlp.up_proj": "up",
              "mlp.down_proj": "down", "input_layernorm": "attn_norm",
              "post_attention_layernorm": "ffn_norm"}


class CalibrationError(ValueError):
    """The calibration input cannot be used (said why)."""


def read_calibration_text(paths) -> list[str]:
    """The texts of one or more files, one string per file."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    texts = []
    for p in paths:
        p = Path(p).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CalibrationError(f"calibration file {p} not found") from None
        except UnicodeDecodeError as e:
            raise CalibrationError(f"calibration file {p} is not UTF-8 text ({e})") from None
        if not text.strip():
            raise CalibrationError(f"calibration text is empty ({p})")
        texts.append(text)
    if not texts:
        raise CalibrationError("no calibration file given")
    return texts


def has_chat_template(model) -> bool:
    return hasattr(model, "apply_chat_template") and bool(getattr(model.tokenizer, "chat_template", None))


def templated(model, text: str) -> str:
    """The text as the model sees it in use, through its chat template: each paragraph becomes
    one assistant turn of a conversation."""
    apply = model.apply_chat_template
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    turns = []
    for p in paragraphs:
        turns += [{"role": "user", "content": ""}, {"role": "assistant", "content": p}]
    return apply(turns)


def calibration_sequences(model, text, n_tokens: int = 8192, seq_len: int = 512,
                          chat_template: bool = True) -> list[list[int]]:
    """Token sequences of seq_len (BOS first where the tokenizer has one), about n_tokens in all.
    text: one text or a list of them (say, one per file); each gives an equal share, as windows
    spread evenly over it, so every part of every text is represented. No padding is ever used,
    so a tokenizer without a pad token is fine. A text with fewer tokens than one window gives
    one shorter sequence (at least MIN_SEQ_TOKENS in all)."""
    texts = [text] if isinstance(text, str) else list(text)
    if not texts or not any(t.strip() for t in texts):
        raise CalibrationError("calibration text is empty")
    use_template = chat_template and has_chat_template(model)
    # the template's markers are control tokens, as in use
    all_ids = [model.tokenizer.encode(templated(model, t) if use_template else t, add_bos=False,
                                      parse_special=use_template) for t in texts]
    total = sum(len(ids) for ids in all_ids)
    if total < MIN_SEQ_TOKENS:
        raise CalibrationError(f"calibration text has {total} tokens; at least {MIN_SEQ_TOKENS} "
                               f"are needed (one window is {seq_len})")
    seq_len = min(seq_len, model.config.max_position_embeddings)
    head = model.tokenizer.bos_prefix
    share = max(n_tokens // len(texts), MIN_SEQ_TOKENS)
    body = min(seq_len - len(head), share)
    sequences = []
    for ids in all_ids:
        if len(ids) < body:
            if ids:
                log.warning("calibration text has %d tokens, fewer than one window of %d: using "
                            "one shorter sequence", len(ids), body + len(head))
                sequences.append(head + ids)
            continue
        available = len(ids) // body
        picks = np.unique(np.linspace(0, available - 1, min(share // body, available)).round())
        sequences += [head + ids[int(k) * body:(int(k) + 1) * body] for k in picks]
    return sequences


@dataclass
class InputStats:
    """Accumulated statistics of one linear input: Gram matrix sum x x^T and sum |x|."""

    gram: np.ndarray
    abs_sum: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls, k: int) -> "InputStats":
        return cls(np.zeros((k, k), np.float64), np.zeros(k, np.float64))

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32)
        self.gram += x.T @ x
        self.abs_sum += np.abs(x).sum(axis=0)
        self.count += x.shape[0]

    @property
    def hessian(self) -> np.ndarray:
        """GPTQ's H = 2 X^T X / N (the scale only matters relative to the damping)."""
        return 2.0 * self.gram / max(self.count, 1)

    @property
    def mean_abs(self) -> np.ndarray:
        return self.abs_sum / max(self.count, 1)


@dataclass
class LayerContext:
    """What a technique sees for layer i: the tensors (float32 values by short name, e.g.
    "q_proj" -> W) and the input statistics of each linear (by the same short names)."""

    index: int
    weights: dict[str, np.ndarray]
    stats: dict[str, InputStats]
    config: object
    names: dict[str, str] = field(default_factory=dict)   # short name -> checkpoint tensor name


@dataclass
class CalibrationReport:
    tokens: int
    sequences: int
    seconds: float
    peak_rss_mb: float

    def __str__(self):
        return (f"calibrated on {self.tokens} tokens ({self.sequences} sequences) in "
                f"{self.seconds:.1f} s, peak RSS {self.peak_rss_mb:.0f} MB")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def short(name: str) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'self_attn.q_proj'."""
    return name.split(".", 3)[3].rsplit(".", 1)[0]


def layer_tensor_names(ckpt: Checkpoint, i: int) -> dict[str, str]:
    prefix = f"model.layers.{i}."
    return {n[len(prefix):].rsplit(".", 1)[0] + ("" if n.endswith(".weight") else ".bias"): n
            for n in ckpt.tensors if n.startswith(prefix)}


def refresh_layer(model, ckpt_tensors: dict[str, Tensor], i: int) -> None:
    """Re-prepare layer i's weights in the running model from the (rewritten) tensors."""
    arch, prep = model.arch, model.backend.prepare
    layer = arch.layers[i]
    for sub, key in LAYER_KEYS.items():
        w = prep(ckpt_tensors[f"model.layers.{i}.{sub}.weight"])
        bias = ckpt_tensors.get(f"model.layers.{i}.{sub}.bias")
        layer[key] = (w, prep(bias)) if bias is not None else w


def layerwise(model, sequences, rewrite, progress=None, sequential: bool = True
              ) -> tuple[dict[str, Tensor], CalibrationReport]:
    """Run the calibration sequences layer by layer through `model` (a float Model), calling
    rewrite(ctx: LayerContext) -> {tensor name: Tensor} for each layer. Returns the new tensor
    dict and a report.

    sequential: the next layer's inputs come from the rewritten (quantised) layer, so later
    layers calibrate on the errors of earlier ones (GPTQ's way; a second pass over each layer).
    Otherwise they are the float layer's outputs from the pass that gathered the statistics
    (AutoAWQ's way; one pass), which is all a measurement that rewrites nothing needs."""
    t0 = time.perf_counter()
    arch, backend, cfg = model.arch, model.backend, model.config
    tensors = dict(model.checkpoint.tensors)
    states = [arch.embed(np.asarray(s, dtype=np.int64)) for s in sequences]     # [len, dim] each
    n_layers = cfg.num_hidden_layers

    def run_layer(i, x, observe=None):
        kv = backend.new_kv_cache(cfg.num_key_value_heads, x.shape[0], cfg.head_dim)
        return arch.layer_forward(i, x, kv, 0, observe)

    for i in range(n_layers):
        names = layer_tensor_names(model.checkpoint, i)
        stats: dict[str, InputStats] = {}

        def observe(_layer, name, x):
            subs = OBSERVED_INPUTS[name]           # linears that share this input share stats
            st = stats.get(subs[0])
            if st is None:
                st = InputStats.empty(x.shape[1])
                stats.update(dict.fromkeys(subs, st))
            st.add(x)

        for j, x in enumerate(states):
            out = run_layer(i, x.copy() if sequential else x, observe)
            if not sequential:
                states[j] = out
        weights = {sub: tensors[n].to_float32() for sub, n in names.items()}
        new = rewrite(LayerContext(i, weights, stats, cfg, names))
        tensors.update(new)
        if sequential:
            refresh_layer(model, tensors, i)
            for j, x in enumerate(states):
                states[j] = run_layer(i, x)
        if progress:
            progress(i + 1, n_layers)
    report = CalibrationReport(tokens=sum(len(s) for s in sequences), sequences=len(sequences),
                               seconds=time.perf_counter() - t0, peak_rss_mb=peak_rss_mb())
    return tensors, report
