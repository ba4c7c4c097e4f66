"""One module per `slmkit` command. Each has add_parser(subparsers), which sets func=run."""

# The order in which `slmkit --help` lists them.
COMMANDS = (
    "generate",
    "chat",
    "suggest",
    "pull",
    "models",
    "quantize",
    "eval",
    "compare",
    "export",
    "info",
    "bench",
    "plugins",
)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def add_precision_args(p, kv_help: str, prefill_help: str):
    """--kv-cache and --prefill-act, with the given help texts."""
    p.add_argument("--kv-cache", choices=("f32", "int8"), default="f32", help=kv_help)
    p.add_argument("--prefill-act", choices=("int16", "int8"), default="int16", help=prefill_help)


def add_model_arg(p):
    p.add_argument("-m", "--model", default=None,
                   help="model folder, file or catalogue name (default: the catalogue's default "
                        "model, downloaded on first use)")
    p.add_argument("--backend", default="cpu")
    p.add_argument("-t", "--threads", type=int, default=None)
    add_precision_args(p, "KV-cache precision (int8: a quarter of the memory, cpu backend)",
                       "activation precision of prompt processing on quantised weights (int8: "
                       "faster with VNNI, or with AVX2 for Q4 weights; less precise; cpu backend)")


def load_model(args):
    """The model the command line names, or the default catalogue model (pulled on first use,
    saying so on stderr)."""
    import sys

    import slmkit
    from slmkit import hub
    from pathlib import Path
    name = hub.DEFAULT_MODEL if args.model is None else args.model
    if not Path(name).expanduser().exists():
        try:
            entry = hub.catalogue_entry(name)
        except KeyError:
            entry = None                        # slmkit.load says what is wrong
        if entry is not None and not hub.is_cached(name) and not hub.cached_path(name).exists():
            print(f"slmkit: first use of {entry.name}: downloading it ({human_bytes(entry.size)}) "
                  f"to {hub.cached_path(name)}", file=sys.stderr)
    return slmkit.load(name, backend=args.backend, threads=args.threads, kv_cache=args.kv_cache,
                       prefill_act=args.prefill_act)
