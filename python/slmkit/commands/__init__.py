"""One module per `slmkit` command. Each has add_parser(subparsers), which sets func=run."""

# The order in which `slmkit --help` lists them.
COMMANDS = (
    "generate",
    "quantize",
    "export",
    "info",
    "plugins",
)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
