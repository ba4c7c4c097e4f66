"""load(): any supported model file or folder -> a ready Model."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import Checkpoint
from .errors import ModelFormatError, UnsupportedModelError
from .model import Model
from .plugins import get_backend, get_registry


def read_checkpoint(path) -> Checkpoint:
    """The Checkpoint in a file or folder, read by whichever registered format claims it."""
    p = Path(path).expanduser()
    if not p.exists():
        from . import hub
        p = hub.resolve_model(path)     # a catalogue name -> its cached file (pulled if absent)
    for name, (can_read, read) in get_registry().formats.items():
        if can_read(p):
            return read(p)
    if p.is_dir():
        inside = sorted(f.name for f in p.iterdir() if f.suffix in (".gguf", ".bin") and f.is_file())
        hint = f"; it holds {', '.join(inside[:3])}: pass that file's path" if inside else ""
        raise ModelFormatError(f"{p}: a folder without config.json, so not a Hugging Face model "
                               f"folder{hint} (slmkit reads folders with config.json + "
                               f"model.safetensors, .gguf files and llama2.c .bin checkpoints)")
    raise ModelFormatError(f"{p}: not a model slmkit can read (expected a Hugging Face folder with "
                           f"config.json, a .gguf file or a llama2.c .bin checkpoint)")


def load_tokenizer(path):
    """A Tokenizer from a file or model folder (tokenizer.json, tokenizer.model, llama2.c
    tokenizer.bin, .gguf, GPT-2 encoder.json/vocab.bpe), through the registered tokenizer kinds
    (built-ins and plugins)."""
    from .tokenizers import TokenizerKind, load_tokenizer as load_with
    kinds = [TokenizerKind(name, can, load) for name, (can, load) in get_registry().tokenizers.items()]
    return load_with(Path(path).expanduser(), kinds)


def model_from_checkpoint(ckpt: Checkpoint, backend="cpu", threads: int | None = None,
                          tokenizer=None, kv_cache: str | None = "f32",
                          prefill_act: str | None = "int16") -> Model:
    from .models import ARCHITECTURES
    arch_cls = ARCHITECTURES.get(ckpt.config.architecture)
    if arch_cls is None:
        raise UnsupportedModelError(f"{ckpt.source}: architecture {ckpt.config.architecture!r} is "
                                    f"not supported; slmkit runs {', '.join(ARCHITECTURES)}")
    backend = "cpu" if backend is None else backend                       # None: the default
    be = get_backend(backend, threads) if isinstance(backend, str) else backend
    tok = tokenizer if tokenizer is not None else ckpt.tokenizer
    if tok is None:
        raise ModelFormatError(f"{ckpt.source}: no tokenizer found beside the model; pass tokenizer=")
    if isinstance(tok, (str, Path)):
        reader = ckpt.extra.get("gguf_reader")
        if reader is not None and str(tok) == ckpt.source:
            # The model file is its own tokenizer and is already parsed: don't parse it twice.
            from .tokenizers.gguf_vocab import GGUFTokenizer
            tok = GGUFTokenizer.from_reader(reader, source=str(tok))
        else:
            tok = load_tokenizer(tok)
    return Model(ckpt, arch_cls(ckpt, be, kv_cache=kv_cache, prefill_act=prefill_act), tok, be)


def load(path, backend: str = "cpu", threads: int | None = None, tokenizer=None,
         kv_cache: str | None = "f32", prefill_act: str | None = "int16") -> Model:
    """Load a model for generation and scoring.

    path      a Hugging Face folder, an slmkit quantised folder, a .gguf or a llama2.c .bin, or
              a catalogue name (e.g. "smollm2-135m-instruct"), downloaded on first use
    backend   "cpu" (C kernels) or "numpy" (float64 reference), or a plugin's backend
    threads   worker threads for the cpu backend (default: SLMKIT_THREADS or physical cores)
    tokenizer a Tokenizer or a path to one (default: the one beside or inside the model)
    kv_cache  "f32" (None: the same), or "int8" (cpu backend: keys and values as int8 rows with
              a scale each, a quarter of the memory and of the attention reads on long contexts)
    prefill_act "int16" (None: the same), or "int8" (cpu backend, x86: prompts of 8 tokens or
              more meet the layers' Q4_0/Q4_1/Q8_0 weights as int8 activation blocks, llama.cpp's
              precision: prefill ~1.5x faster with AVX-512 VNNI, and with AVX2 for Q4 weights
              (Q8_0 there ~1.1x), but SmolLM2's last logits move 1-5% off float64 instead of
              under 0.03%, enough to change some greedy replies; generation steps, the output
              head and float weights are unchanged)
    """
    return model_from_checkpoint(read_checkpoint(path), backend, threads, tokenizer, kv_cache,
                                 prefill_act)
