"""The `slmkit` command line. Every command is a thin layer over the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def cmd_generate(args) -> int:
    import slmkit
    model = slmkit.load(args.model, backend=args.backend, threads=args.threads)
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    for piece in model.stream(args.prompt, max_new_tokens=args.max_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                              repetition_penalty=args.repeat_penalty, seed=args.seed,
                              stop=args.stop or ()):
        out.write(piece)
        out.flush()
    out.write("\n")
    return 0


def cmd_quantize(args) -> int:
    from .compression import quantize
    path = quantize(args.src, args.out, bits=args.bits, group=args.group, method=args.method,
                    scheme=args.scheme, keep=args.keep)
    size = sum(f.stat().st_size for f in Path(path).iterdir())
    print(f"wrote {path} ({_human_bytes(size)})")
    return 0


def model_info(path) -> dict:
    from collections import Counter

    from .loading import read_checkpoint
    p = Path(path)
    ckpt = read_checkpoint(p)
    c = ckpt.config
    size = sum(f.stat().st_size for f in p.iterdir() if f.is_file()) if p.is_dir() else p.stat().st_size
    formats = Counter(t.wtype for t in ckpt.tensors.values())
    return {
        "path": str(p), "architecture": c.architecture, "parameters": ckpt.num_parameters,
        "file_size": size, "layers": c.num_hidden_layers, "hidden_size": c.hidden_size,
        "heads": c.num_attention_heads, "kv_heads": c.num_key_value_heads,
        "ffn": c.intermediate_size, "vocab": c.vocab_size, "context": c.max_position_embeddings,
        "rope_theta": c.rope_theta, "tied_embeddings": c.tie_word_embeddings,
        "tensor_formats": dict(formats), "quantization": ckpt.quantization,
        "tensors": {n: {"type": t.wtype, "shape": list(t.shape)} for n, t in ckpt.tensors.items()},
    }


def cmd_info(args) -> int:
    info = model_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}")
    print(f"  architecture   {info['architecture']}")
    print(f"  parameters     {info['parameters']:,}")
    print(f"  file size      {_human_bytes(info['file_size'])}")
    print(f"  shape          {info['layers']} layers, hidden {info['hidden_size']}, "
          f"{info['heads']} heads / {info['kv_heads']} KV heads, FFN {info['ffn']}, vocab {info['vocab']}")
    print(f"  context        {info['context']} (RoPE base {info['rope_theta']:g})")
    print(f"  tied embedding {info['tied_embeddings']}")
    print("  tensor formats " + ", ".join(f"{k}: {v}" for k, v in sorted(info["tensor_formats"].items())))
    if info["quantization"]:
        q = {k: v for k, v in info["quantization"].items() if k != "tensors"}
        print(f"  quantization   {q}")
    if args.tensors:
        for name, t in info["tensors"].items():
            print(f"    {name:55s} {t['type']:5s} {t['shape']}")
    return 0


def cmd_plugins(args) -> int:
    from .plugins import list_plugins
    plugins = list_plugins()
    if args.json:
        print(json.dumps(plugins, indent=2))
        return 0
    for p in plugins:
        tag = " (built-in)" if p["builtin"] else ""
        print(f"{p['name']}{tag}")
        for kind, names in p["registers"].items():
            print(f"  {kind}: {', '.join(names)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="slmkit", description="Small language models, small and fast.")
    parser.add_argument("--version", action="version", version=f"slmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate text from a prompt (streams)")
    g.add_argument("prompt")
    g.add_argument("-m", "--model", required=True, help="model folder or file")
    g.add_argument("-n", "--max-tokens", type=int, default=256)
    g.add_argument("--temperature", "--temp", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=40)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--min-p", type=float, default=0.05)
    g.add_argument("--repeat-penalty", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop", action="append", help="stop string (repeatable)")
    g.add_argument("--backend", default="cpu")
    g.add_argument("-t", "--threads", type=int, default=None)
    g.set_defaults(func=cmd_generate)

    q = sub.add_parser("quantize", help="quantise a model into an slmkit folder")
    q.add_argument("src")
    q.add_argument("out")
    q.add_argument("--bits", type=int, choices=(8, 4), default=8)
    q.add_argument("--group", type=int, default=32)
    q.add_argument("--method", default="rtn")
    q.add_argument("--scheme", default=None, help="block format: q8_0 (8-bit), q4_0 or q4_1 (4-bit)")
    q.add_argument("--keep", action="append", help="keep tensors matching this pattern unquantised")
    q.set_defaults(func=cmd_quantize)

    i = sub.add_parser("info", help="architecture, size and tensor formats of a model")
    i.add_argument("path")
    i.add_argument("--tensors", action="store_true", help="list every tensor")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    p = sub.add_parser("plugins", help="list plugins and what they register")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)
    return parser


def main(argv=None) -> int:
    from .errors import SlmkitError
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except (SlmkitError, FileNotFoundError, ValueError) as e:
        print(f"slmkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
