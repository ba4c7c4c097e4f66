"""Speed of a model the way llama-bench measures it: prefill of n_prompt tokens (pp) and
generation of n_gen tokens one at a time (tg), each from an empty KV cache, after one warm-up
run; the median of `reps` repetitions. Token ids are random (the speed does not depend on them)
and tg feeds one fixed token per step, so only the forward pass is timed, not sampling."""
from __future__ import annotations

import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class BenchResult:
    model: str
    format: str                 # the most common weight format among the linear layers
    parameters: int
    weight_bytes: int
    backend: str
    kernel: str                 # SIMD variant of the cpu backend ("avx2", "generic"), or ""
    threads: int
    kv_cache: str               # "f32" or "int8"
    prefill_act: str            # "int16" or "int8": the activation blocks prefill really ran with
    repacked: int               # matrices repacked at load (0: weights run as stored)
    n_prompt: int
    n_gen: int
    reps: int
    pp_tps: float | None        # prefill tokens per second (median)
    tg_tps: float | None        # generation tokens per second (median)
    pp_runs: list
    tg_runs: list
    peak_rss_mb: float          # of this process, so far

    def to_dict(self) -> dict:
        return asdict(self)


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def main_format(model) -> str:
    tensors = model.checkpoint.tensors
    formats = Counter(t.wtype for n, t in tensors.items()
                      if n.startswith("model.layers.") and len(t.shape) == 2)
    return formats.most_common(1)[0][0] if formats else "?"


def time_prefill(model, ids) -> float:
    cache = model.arch.new_cache(len(ids))
    t0 = time.perf_counter()
    model.arch.forward(ids, cache)
    return time.perf_counter() - t0


def time_generation(model, n_gen: int, token: int) -> float:
    cache = model.arch.new_cache(n_gen)
    t0 = time.perf_counter()
    for _ in range(n_gen):
        model.arch.forward([token], cache)
    return time.perf_counter() - t0


def bench(model, n_prompt: int = 512, n_gen: int = 128, reps: int = 5, seed: int = 0) -> BenchResult:
    """Time prefill and generation of a loaded slmkit.Model (n_prompt or n_gen 0 skips one)."""
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    ctx = model.config.max_position_embeddings
    if max(n_prompt, n_gen) > ctx:
        raise ValueError(f"{max(n_prompt, n_gen)} tokens exceed the model's context of {ctx}")
    vocab = model.config.vocab_size
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, n_prompt)
    token = int(rng.integers(0, vocab))
    pp, tg = [], []
    for rep in range(reps + 1):                      # run 0 is the warm-up
        if n_prompt:
            t = time_prefill(model, ids)
            if rep:
                pp.append(n_prompt / t)
        if n_gen:
            t = time_generation(model, n_gen, token)
            if rep:
                tg.append(n_gen / t)
    info = model.backend.info()
    ckpt = model.checkpoint
    return BenchResult(
        model=str(ckpt.source), format=main_format(model), parameters=ckpt.num_parameters,
        weight_bytes=sum(t.nbytes for t in ckpt.tensors.values()), backend=info["backend"],
        kernel=info.get("kernel", ""), threads=int(info.get("threads", 1)),
        kv_cache=getattr(model.arch, "kv_cache", "f32"),
        prefill_act=getattr(model.arch, "prefill_act_in_effect", "int16"),
        repacked=getattr(getattr(model.arch, "compiled", None), "repacked", 0), n_prompt=n_prompt,
        n_gen=n_gen, reps=reps, pp_tps=statistics.median(pp) if pp else None,
        tg_tps=statistics.median(tg) if tg else None, pp_runs=pp, tg_runs=tg,
        peak_rss_mb=round(peak_rss_mb(), 1))
