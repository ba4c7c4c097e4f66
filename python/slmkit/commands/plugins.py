"""slmkit plugins: every plugin and what it registers."""
import json


def add_parser(sub):
    p = sub.add_parser("plugins", help="list plugins and what they register")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..plugins import list_plugins
    plugins = list_plugins()
    if args.json:
        print(json.dumps(plugins, indent=2))
        return 0
    for p in plugins:
        tag = " (built-in)" if p["builtin"] else ""
        print(f"{p['name']}{tag}")
        for kind, names in p["registers"].items():
            print(f"  {kind}: {', '.join(names)}")
    return 0


