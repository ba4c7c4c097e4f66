"""export(): write a model in a format other tools read (GGUF for llama.cpp; compressed-tensors
for transformers and vLLM). The source is only read; the output appears whole or not at all."""
from __future__ import annotations

from pathlib import Path

from .loading import read_checkpoint

EXPORT_FORMATS = ("gguf", "compressed-tensors")


def export(src, out, to: str = "gguf", tokenizer_from=None) -> Path:
    """Write the model at `src` (any format slmkit reads) to `out`.

    to              "gguf": one .gguf file (tensor formats kept as they are, Q/K rows in
                    llama.cpp's order, tokenizer metadata); "compressed-tensors": a Hugging Face
                    folder in llm-compressor's pack-quantized format
    tokenizer_from  a tokenizer file or folder to use instead of the model's own
    """
    if to not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {to!r}; choose from {', '.join(EXPORT_FORMATS)}")
    src_path, out_path = Path(src).expanduser(), Path(out).expanduser()
    if src_path.exists():
        s, o = src_path.resolve(), out_path.resolve()
        if o == s or s in o.parents:
            raise ValueError(f"the output {o} would overwrite or sit inside the source {s}")
    ckpt = read_checkpoint(src)
    if to == "gguf":
        from .formats.gguf_write import write_gguf
        return write_gguf(ckpt, out_path, tokenizer_from=tokenizer_from)
    from .formats.compressed_tensors import write_compressed_tensors
    return write_compressed_tensors(ckpt, out_path, tokenizer_from=tokenizer_from)
