"""slmkit compare: build compressed variants of one model, evaluate them against its float
baseline, and write a table (compare.md, compare.json) and a size-versus-quality plot
(compare.png, with the [plot] extra)."""


def add_parser(sub):
    from ..compare import DEFAULT_VARIANTS
    c = sub.add_parser("compare", help="size against quality of compressed variants of a model")
    c.add_argument("model", help="model folder or file, or a catalogue name")
    c.add_argument("--text", action="append", required=True, metavar="FILE",
                   help="UTF-8 text to evaluate on (repeatable)")
    c.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated variant specs: f32, rtn8, rtn4-g32, gptq4-g128-ao, "
                        "awq4-g128, rtn4-g128-mixed0.25, or a model path (default: %(default)s)")
    c.add_argument("--calib", action="append", metavar="FILE",
                   help="calibration text (repeatable); needed by gptq, awq and mixed variants")
    c.add_argument("--calib-tokens", type=int, default=8192, metavar="N")
    c.add_argument("--ctx", type=int, default=512, help="window length in tokens (default 512)")
    c.add_argument("--max-tokens", type=int, default=16384, metavar="N",
                   help="use the first N tokens of each text (default 16384; 0: all)")
    c.add_argument("--out", default="slmkit-compare", metavar="DIR",
                   help="folder for compare.md/.json/.png (default ./slmkit-compare)")
    c.add_argument("--save-models", action="store_true",
                   help="also write every built variant into DIR/models/NAME")
    c.add_argument("--no-plot", action="store_true", help="skip the plot")
    c.add_argument("--backend", default="cpu")
    c.add_argument("-t", "--threads", type=int, default=None)
    c.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..compare import compare
    from ..plotting import plotting_available
    from .progress import ProgressBar
    out = Path(args.out)
    result = compare(args.model, args.text, variants=[v for v in args.variants.split(",") if v.strip()],
                     calib=args.calib, calib_tokens=args.calib_tokens, ctx=args.ctx,
                     max_tokens=args.max_tokens or None, backend=args.backend, threads=args.threads,
                     save_models=out / "models" if args.save_models else None,
                     progress=lambda name: ProgressBar(f"eval {name}"),
                     calib_progress=lambda name: ProgressBar(f"calibrate {name}"))
    written = result.write(out, plot=not args.no_plot)
    print(result.markdown())
    print("wrote " + ", ".join(str(p) for p in written))
    if not args.no_plot and not plotting_available():
        print('slmkit: no plot: matplotlib is not installed (pip install "slmkit[plot]")',
              file=sys.stderr)
    return 0
