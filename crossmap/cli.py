"""The ``crossmap`` command line. Each subcommand lives in ``crossmap/commands/<name>.py`` and
exposes ``register(subparsers)``; errors a user can cause print one clear line and exit with the
error's code (2 bad usage or input, 3 bad program, 4 bad model, 5 binarization, 6 resources)."""

from __future__ import annotations

import argparse
import importlib
import sys

from crossmap import __version__
from crossmap.errors import CrossmapError, UsageError

COMMANDS = ["info", "inspect", "compile", "report", "run", "verify", "emulate"]


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ``UsageError``s (one line, exit code 2), so that a bad
    value is reported like every other error, before any work is done."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise instead of printing the usage and exiting."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand registered."""
    parser = Parser(prog="crossmap", description="Compile ONNX networks to neuromorphic "
                                     "cores, inspect the result, and emulate it.")
    parser.add_argument("--version", action="version", version=f"crossmap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"crossmap.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"crossmap.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crossmap`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"crossmap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CrossmapError as exc:
        print(f"crossmap {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
