"""slmkit models: the model catalogue, and which models are downloaded."""


def add_parser(sub):
    p = sub.add_parser("models", help="list the model catalogue and what is downloaded")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def catalogue_rows() -> list[dict]:
    from .. import hub
    return [{"name": e.name, "size": e.size, "licence": e.licence, "source": e.requirement,
             "member": e.member, "sha256": e.sha256, "cached": hub.is_cached(e.name),
             "path": str(hub.cached_path(e.name)), "default": e.name == hub.DEFAULT_MODEL,
             "description": e.description}
            for e in hub.CATALOGUE.values()]


def run(args) -> int:
    import json

    from . import human_bytes
    rows = catalogue_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "SIZE", "LICENCE", "SOURCE (pip)", "SHA256", "CACHED", "PATH")]
    table += [(r["name"] + (" (default)" if r["default"] else ""), human_bytes(r["size"]),
               r["licence"], r["source"], r["sha256"][:12] + "…", "yes" if r["cached"] else "no",
               r["path"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0
