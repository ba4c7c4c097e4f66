"""slmkit export: write a model as GGUF (llama.cpp) or compressed-tensors (transformers, vLLM)."""
from pathlib import Path

from . import human_bytes


def add_parser(sub):
    e = sub.add_parser("export", help="write a model in a format other tools read")
    e.add_argument("src")
    e.add_argument("out")
    e.add_argument("--to", choices=("gguf", "compressed-tensors"), default="gguf")
    e.add_argument("--tokenizer", default=None, help="take the vocabulary from this file or folder")
    e.set_defaults(func=run)


def run(args) -> int:
    from ..exporting import export
    path = Path(export(args.src, args.out, to=args.to, tokenizer_from=args.tokenizer))
    size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
    print(f"wrote {path} ({human_bytes(size)})")
    return 0
