"""slmkit against llama.cpp (through llama-cpp-python) on the same GGUF file, the same machine and
the same thread counts, measured in one process with the runs alternating, so that both see the
same machine state. Prints medians and the ratios slmkit / llama.cpp.

    python benchmarks/peer_llamacpp.py                        # SmolLM2-135M as q4_0 and q8_0, 1 and 2 threads
    python benchmarks/peer_llamacpp.py --formats q4_0 --threads 2 -p 512 -n 128 --rounds 7 --json out.json
    python benchmarks/peer_llamacpp.py --formats q4_0 -n 0 --prefill-act int8   # llama.cpp's precision

Both sides time the forward pass alone, as llama-bench does: pp = a prefill of p random tokens
into an empty KV cache, tg = n single-token steps from an empty cache. The GGUFs are made from the
SmolLM2 GGUF by slmkit (every weight matrix, the tied embedding included, requantised to the
format), cached under $SLMKIT_HOME/bench/, so both engines read the very same bytes.

llama-cpp-python is an optional dependency (`pip install llama-cpp-python`, built from source);
it is not needed by the tests.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import slmkit
from slmkit import hub
from slmkit.bench import time_generation, time_prefill

FORMATS = {"q4_0": (4, "q4_0"), "q4_1": (4, "q4_1"), "q8_0": (8, "q8_0")}


def peer_gguf(fmt: str, source=None) -> Path:
    """SmolLM2 (or `source`) with every weight matrix in `fmt`, as a GGUF both engines read."""
    source = Path(source or hub.find_smollm2_gguf() or hub.pull())
    out = hub.home() / "bench" / f"{source.stem}.{fmt}.gguf"
    if not out.exists():
        from slmkit.compression import quantize
        bits, scheme = FORMATS[fmt]
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folder = quantize(source, Path(tmp) / "q", bits=bits, scheme=scheme,
                              quantize_embeddings=True)
            slmkit.export(folder, out, to="gguf", tokenizer_from=None)
    return out


class LlamaCpp:
    """The llama.cpp side: the same two timings through llama-cpp-python."""

    def __init__(self, path, threads: int, n_ctx: int, n_batch: int):
        from llama_cpp import Llama
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                         n_threads=threads, n_threads_batch=threads, verbose=False)

    def prefill(self, ids) -> float:
        self.llm.reset()
        t0 = time.perf_counter()
        self.llm.eval([int(t) for t in ids])
        return time.perf_counter() - t0

    def generation(self, n: int, token: int) -> float:
        self.llm.reset()
        t0 = time.perf_counter()
        for _ in range(n):
            self.llm.eval([token])
        return time.perf_counter() - t0

    def greedy(self, ids, n: int) -> list[int]:
        self.llm.reset()
        out = []
        for tok in self.llm.generate([int(t) for t in ids], top_k=1, top_p=1.0, temp=0.0,
                                     repeat_penalty=1.0):
            out.append(int(tok))
            if len(out) == n:
                break
        return out


def compare(path, threads: int, n_prompt: int = 512, n_gen: int = 128, rounds: int = 5,
            seed: int = 0, prefill_act: str = "int16") -> dict:
    """Alternating rounds of slmkit and llama.cpp on one GGUF; medians in tokens/s and ratios.
    prefill_act="int8" runs slmkit's prefill at llama.cpp's activation precision (int8 blocks)."""
    ours = slmkit.load(path, threads=threads, prefill_act=prefill_act)
    peer = LlamaCpp(path, threads, n_ctx=max(n_prompt, n_gen) + 8, n_batch=max(n_prompt, 1))
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, ours.config.vocab_size, n_prompt)
    token = int(rng.integers(0, ours.config.vocab_size))
    runs = {k: [] for k in ("slmkit_pp", "llama_pp", "slmkit_tg", "llama_tg")}
    for r in range(rounds + 1):                        # round 0 warms both up
        timings = {}
        if n_prompt:
            timings["slmkit_pp"] = n_prompt / time_prefill(ours, ids)
            timings["llama_pp"] = n_prompt / peer.prefill(ids)
        if n_gen:
            timings["slmkit_tg"] = n_gen / time_generation(ours, n_gen, token)
            timings["llama_tg"] = n_gen / peer.generation(n_gen, token)
        if r:
            for k, v in timings.items():
                runs[k].append(v)
    med = {k: statistics.median(v) for k, v in runs.items() if v}
    out = {"model": str(path), "threads": threads, "n_prompt": n_prompt, "n_gen": n_gen,
           "rounds": rounds, "kernel": ours.backend.info().get("kernel"),
           "prefill_act": prefill_act, **med}
    if n_prompt:
        out["pp_ratio"] = med["slmkit_pp"] / med["llama_pp"]
    if n_gen:
        out["tg_ratio"] = med["slmkit_tg"] / med["llama_tg"]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="source GGUF (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--formats", nargs="+", default=["q4_0", "q8_0"], choices=sorted(FORMATS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prefill-act", choices=("int16", "int8"), default="int16",
                    help="slmkit's prefill activation precision (int8: llama.cpp's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python", file=sys.stderr)
        return 2
    results = []
    print(f"{'format':6} {'thr':>3} | {'pp slmkit':>10} {'pp llama':>9} {'ratio':>6} | "
          f"{'tg slmkit':>10} {'tg llama':>9} {'ratio':>6}")
    for fmt in args.formats:
        path = peer_gguf(fmt, args.model)
        for t in args.threads:
            r = compare(path, t, args.n_prompt, args.n_gen, args.rounds,
                        prefill_act=args.prefill_act)
            r["format"] = fmt
            results.append(r)
            cells = [f"{r[key]:{width}.{digits}f}" if key in r else f"{'-':>{width}}"
                     for key, width, digits in (("slmkit_pp", 10, 1), ("llama_pp", 9, 1),
                                                ("pp_ratio", 6, 2), ("slmkit_tg", 10, 1),
                                                ("llama_tg", 9, 1), ("tg_ratio", 6, 2))]
            print(f"{fmt:6} {t:>3} | {' '.join(cells[:3])} | {' '.join(cells[3:])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
