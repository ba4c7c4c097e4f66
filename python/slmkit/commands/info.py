"""slmkit info: architecture, parameter count, file size and tensor formats of a model."""
import json
from pathlib import Path

from . import human_bytes


def add_parser(sub):
    i = sub.add_parser("info", help="architecture, size and tensor formats of a model")
    i.add_argument("path", help="model folder or file, or a catalogue name")
    i.add_argument("--tensors", action="store_true", help="list every tensor")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=run)


def model_info(path) -> dict:
    from collections import Counter

    from ..loading import read_checkpoint
    ckpt = read_checkpoint(path)
    p = Path(ckpt.source)                   # a catalogue name resolves to its cached file
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
        "converted_tensors": ckpt.extra.get("converted_tensors", []),
        "gguf_types": [{"type": t, "action": a, "count": n}
                       for (t, a), n in sorted(ckpt.extra.get("gguf_types", {}).items())],
        "tensors": {n: {"type": t.wtype, "shape": list(t.shape)} for n, t in ckpt.tensors.items()},
    }


def run(args) -> int:
    info = model_info(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}")
    print(f"  architecture   {info['architecture']}")
    print(f"  parameters     {info['parameters']:,}")
    print(f"  file size      {human_bytes(info['file_size'])}")
    print(f"  shape          {info['layers']} layers, hidden {info['hidden_size']}, "
          f"{info['heads']} heads / {info['kv_heads']} KV heads, FFN {info['ffn']}, vocab {info['vocab']}")
    print(f"  context        {info['context']} (RoPE base {info['rope_theta']:g})")
    print(f"  tied embedding {info['tied_embeddings']}")
    print("  tensor formats " + ", ".join(f"{k}: {v}" for k, v in sorted(info["tensor_formats"].items())))
    if info["gguf_types"]:
        said = {"view": "run as stored", "convert": "converted on load", "skip": "not used"}
        print("  GGUF types     " + ", ".join(f"{g['type']} x{g['count']} ({said[g['action']]})"
                                            for g in info["gguf_types"]))
    if info["converted_tensors"]:
        print(f"  converted      {len(info['converted_tensors'])} tensor(s) in types slmkit does not "
              f"run: " + ", ".join(info["converted_tensors"]))
    if info["quantization"]:
        q = {k: v for k, v in info["quantization"].items() if k != "tensors"}
        print(f"  quantization   {q}")
    if args.tensors:
        for name, t in info["tensors"].items():
            print(f"    {name:55s} {t['type']:5s} {t['shape']}")
    return 0


