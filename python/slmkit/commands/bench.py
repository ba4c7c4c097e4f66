"""slmkit bench: prefill and generation speed, the way llama-bench reports it."""
import json
import statistics

from . import add_model_arg, human_bytes, load_model


def add_parser(sub):
    b = sub.add_parser("bench", help="prefill and generation tokens per second (like llama-bench)")
    b.add_argument("model_pos", nargs="?", metavar="MODEL", help="model (or use -m)")
    add_model_arg(b)
    b.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (0: skip)")
    b.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (0: skip)")
    b.add_argument("-r", "--reps", type=int, default=5, help="timed repetitions after a warm-up")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=run)


def _rate(runs) -> str:
    if not runs:
        return "-"
    spread = statistics.stdev(runs) if len(runs) > 1 else 0.0
    return f"{statistics.median(runs):.2f} ± {spread:.2f}"


def run(args) -> int:
    from ..bench import bench
    if args.model_pos is not None:
        args.model = args.model_pos
    if args.n_prompt < 0 or args.n_gen < 0:
        raise ValueError(f"--n-prompt and --n-gen count tokens: 0 or more, got "
                         f"{args.n_prompt} and {args.n_gen}")
    if args.n_prompt + args.n_gen == 0:
        raise ValueError("give a positive --n-prompt and/or --n-gen")
    model = load_model(args)
    r = bench(model, n_prompt=args.n_prompt, n_gen=args.n_gen, reps=args.reps)
    if args.json:
        print(json.dumps(r.to_dict()))
        return 0
    options = [r.kernel] if r.kernel else []
    options += [f"{r.kv_cache} KV cache"] if r.kv_cache != "f32" else []
    options += [f"{r.prefill_act} prefill"] if r.prefill_act != "int16" else []
    backend = f"{r.backend} ({', '.join(options)})" if options else r.backend
    rows = []
    if r.n_prompt:
        rows.append((f"pp{r.n_prompt}", _rate(r.pp_runs)))
    if r.n_gen:
        rows.append((f"tg{r.n_gen}", _rate(r.tg_runs)))
    head = ("model", "format", "size", "params", "backend", "threads", "test", "t/s")
    table = [(r.model.rsplit("/", 1)[-1], r.format, human_bytes(r.weight_bytes),
              f"{r.parameters / 1e6:.2f} M", backend, str(r.threads), test, rate) for test, rate in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    repacked = f", {r.repacked} quantised matrices repacked once at load" if r.repacked else ""
    print(f"\npeak RSS {r.peak_rss_mb:.0f} MB (weights {human_bytes(r.weight_bytes)}: "
          f"memory-mapped{repacked})")
    return 0
