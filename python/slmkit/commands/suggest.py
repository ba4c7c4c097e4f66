"""slmkit suggest: the most likely next words after a text (predictive text)."""
from . import add_model_arg, load_model


def add_parser(sub):
    s = sub.add_parser("suggest", help="the most likely next words after a text")
    s.add_argument("text")
    s.add_argument("-k", type=int, default=3, help="how many words (default 3)")
    s.add_argument("--probs", action="store_true", help="print each word's probability too")
    add_model_arg(s)
    s.set_defaults(func=run)


def run(args) -> int:
    model = load_model(args)
    for word, prob in model.suggest_with_probs(args.text, k=args.k):
        print(f"{word}\t{prob:.4f}" if args.probs else word)
    return 0
