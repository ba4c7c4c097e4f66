"""slmkit quantize: round-to-nearest (and other registered techniques) into an slmkit folder."""
from pathlib import Path

from . import human_bytes


def add_parser(sub):
    q = sub.add_parser("quantize", help="quantise a model into an slmkit folder")
    q.add_argument("src")
    q.add_argument("out")
    q.add_argument("--bits", type=int, choices=(8, 4), default=8)
    q.add_argument("--group", type=int, default=32)
    q.add_argument("--method", default="rtn")
    q.add_argument("--scheme", default=None, help="block format: q8_0 (8-bit), q4_0 or q4_1 (4-bit)")
    q.add_argument("--keep", action="append", help="keep tensors matching this pattern unquantised")
    q.set_defaults(func=run)


def run(args) -> int:
    from ..compression import quantize
    path = quantize(args.src, args.out, bits=args.bits, group=args.group, method=args.method,
                    scheme=args.scheme, keep=args.keep)
    size = sum(f.stat().st_size for f in Path(path).iterdir())
    print(f"wrote {path} ({human_bytes(size)})")
    return 0
