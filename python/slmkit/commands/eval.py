"""slmkit eval: perplexity of a model on a text file, and against a base model the KL divergence
of next-token distributions, its 99th percentile and top-1 agreement."""
import json

from . import add_precision_args


def add_parser(sub):
    e = sub.add_parser("eval", help="perplexity (and KL / top-1 against a base model) on a text")
    e.add_argument("model", help="model folder or file, or a catalogue name")
    e.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text to score")
    e.add_argument("--base", default=None, help="base model to compare the next-token distributions with")
    e.add_argument("--ctx", type=int, default=512, help="window length in tokens (default 512)")
    e.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="use only the first N tokens of the text")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--backend", default="cpu")
    e.add_argument("-t", "--threads", type=int, default=None)
    add_precision_args(e, "KV-cache precision of MODEL (the base keeps f32)",
                       "prefill activation precision of MODEL (the base keeps int16): with "
                       "--base MODEL, this measures what the option costs")
    e.set_defaults(func=run)


def run(args) -> int:
    from ..evaluate import evaluate, read_text
    from ..loading import load
    from .progress import ProgressBar
    text = read_text(args.text)
    model = load(args.model, backend=args.backend, threads=args.threads, kv_cache=args.kv_cache,
                 prefill_act=args.prefill_act)
    result = evaluate(model, text, base=args.base, ctx=args.ctx, max_tokens=args.max_tokens,
                      progress=ProgressBar("windows"), backend=args.backend, threads=args.threads)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result)
    return 0
