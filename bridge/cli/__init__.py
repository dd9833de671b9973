"""The `eqbridge` command. Each subcommand lives in its own module with `register(subparsers)`.

A module's `register` adds its parser and sets `func=run`; `run(args) -> int` returns the exit code.
Errors the user caused (`EqBridgeError`) print one line on stderr and exit 2; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bridge.errors import EqBridgeError

# One line per subcommand module, in the order `eqbridge --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "bridge.cli.curve",
    "bridge.cli.fit",
    "bridge.cli.render",
    "bridge.cli.map_plugin",
    "bridge.cli.train",
    "bridge.cli.serve",
    "bridge.cli.send",
    "bridge.cli.profile",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eqbridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EqBridgeError as exc:
        print(f"eqbridge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
