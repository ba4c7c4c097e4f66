"""slmkit generate: stream a continuation of a prompt to the terminal."""
import sys

from ..generate import check_max_new_tokens
from ..sampling import SamplingParams
from . import add_model_arg, load_model


def add_parser(sub):
    g = sub.add_parser("generate", help="generate text from a prompt (streams)")
    g.add_argument("prompt")
    add_model_arg(g)
    g.add_argument("-n", "--max-tokens", type=int, default=256)
    add_sampling_args(g)
    g.set_defaults(func=run)


def add_sampling_args(p):
    p.add_argument("--temperature", "--temp", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", help="stop string (repeatable)")


def sampling_kwargs(args) -> dict:
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop or ())


def check_sampling_args(args) -> None:
    """Bad numbers are reported before the model loads and before anything is printed."""
    kw = sampling_kwargs(args)
    kw.pop("stop")
    SamplingParams(**kw)
    check_max_new_tokens(args.max_tokens)


def run(args) -> int:
    check_sampling_args(args)
    model = load_model(args)
    out = sys.stdout
    out.write(args.prompt)
    out.flush()
    try:
        for piece in model.stream(args.prompt, max_new_tokens=args.max_tokens,
                                  **sampling_kwargs(args)):
            out.write(piece)
            out.flush()
    finally:                # also before an error message or after Ctrl-C: end the line
        out.write("\n")
        out.flush()
    return 0
