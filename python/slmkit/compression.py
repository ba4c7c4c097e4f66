"""File-to-file compression: read a model, apply a registered technique, write the result.
The source is only read; the output appears whole or not at all."""
from __future__ import annotations

from pathlib import Path

from .formats.hf import write_hf
from .loading import read_checkpoint
from .plugins import get_technique


def quantize(src, out, bits: int = 8, group: int = 32, method: str = "rtn", **options) -> Path:
    """Quantise the model at `src` and write an slmkit folder at `out` (config.json +
    model.safetensors + tokenizer files) that slmkit.load reads back."""
    src_path = Path(src).expanduser()
    if not src_path.exists():
        from . import hub
        src_path = hub.resolve_model(src)       # a catalogue name -> its cached file
    src_path, out_path = src_path.resolve(), Path(out).expanduser().resolve()
    if out_path == src_path or src_path in out_path.parents or (
            src_path.is_dir() and out_path == src_path.parent):
        raise ValueError(f"the output {out_path} would overwrite or sit inside the source {src_path}")
    ckpt = read_checkpoint(src_path)
    compressed = get_technique(method).apply(ckpt, bits=bits, group=group, **options)
    return write_hf(compressed, out_path)
