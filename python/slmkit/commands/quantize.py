"""slmkit quantize: round-to-nearest, GPTQ or AWQ (or another registered technique) into an
slmkit folder."""
import json
from pathlib import Path

from . import human_bytes


def add_parser(sub):
    q = sub.add_parser("quantize", help="quantise a model into an slmkit folder")
    q.add_argument("src", help="model folder or file, or a catalogue name")
    q.add_argument("out", help="output folder (written whole or not at all)")
    q.add_argument("--bits", type=int, choices=(8, 4), default=8)
    q.add_argument("--group", type=int, choices=(32, 64, 128), default=32,
                   help="input columns sharing one scale (default 32)")
    q.add_argument("--method", default="rtn", help="rtn (default), gptq, awq, or a plugin's technique")
    q.add_argument("--scheme", default=None, help="block format: q8_0 (8-bit), q4_0 or q4_1 (4-bit)")
    q.add_argument("--keep", action="append", metavar="PATTERN",
                   help="keep tensors matching this glob or regex as they are (repeatable)")
    q.add_argument("--calib", action="append", metavar="FILE",
                   help="calibration text file (repeatable); needed by gptq, awq and --mixed")
    q.add_argument("--calib-tokens", type=int, default=8192, metavar="N",
                   help="calibration tokens to use (default 8192)")
    q.add_argument("--mixed", type=float, default=None, metavar="FRACTION",
                   help="keep this fraction of the linear weights at int8, the most sensitive "
                        "tensors as measured on the calibration text")
    q.add_argument("--act-order", action="store_true",
                   help="gptq: quantise columns by decreasing activation energy")
    q.add_argument("-t", "--threads", type=int, default=None)
    q.set_defaults(func=run)


def run(args) -> int:
    from ..compression import quantize
    from .progress import ProgressBar
    calibrated = args.method in ("gptq", "awq") or args.mixed
    path = quantize(args.src, args.out, bits=args.bits, group=args.group, method=args.method,
                    scheme=args.scheme, keep=args.keep, calib=args.calib,
                    calib_tokens=args.calib_tokens, mixed=args.mixed, act_order=args.act_order,
                    threads=args.threads, progress=ProgressBar("layers") if calibrated else None)
    size = sum(f.stat().st_size for f in Path(path).iterdir())
    print(f"wrote {path} ({human_bytes(size)})")
    info = json.loads((Path(path) / "config.json").read_text())["quantization_config"]
    if "calibration_tokens" in info:
        print(f"calibrated on {info['calibration_tokens']} tokens in {info['seconds']:.1f} s, "
              f"peak RSS {info['peak_rss_mb']} MB")
    return 0
