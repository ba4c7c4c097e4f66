"""The `slmkit` command line. Every command is a thin layer over the Python API; each lives in
its own module under slmkit/commands/."""
from __future__ import annotations

import argparse
import importlib
import sys


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .commands import COMMANDS
    parser = argparse.ArgumentParser(prog="slmkit", description="Small language models, small and fast.")
    parser.add_argument("--version", action="version", version=f"slmkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"slmkit.commands.{name}").add_parser(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line: one line for the user, no Python source location."""
    return f"slmkit: warning: {message}\n"


def main(argv=None) -> int:
    import warnings
    from .errors import SlmkitError
    args = build_parser().parse_args(argv)
    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except (SlmkitError, OSError, ValueError) as e:      # OSError: unreadable paths, disk full
        print(f"slmkit: error: {e}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
