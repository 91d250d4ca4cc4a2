"""The ``rps`` command.

The client distribution brings the commands that talk to a running service (``register``,
``explain``, …). Other installed distributions add theirs through the ``rps.commands``
entry-point group: each entry point names a callable ``add_commands(subparsers)``. The
service declares one for ``serve``, ``worker``, ``keys``, ``jobs`` and ``db``, so with only
the client installed ``rps --help`` lists the client commands, and with the service installed
it lists all of them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from rps.client_commands import add_client_commands

__all__ = ["COMMANDS_GROUP", "build_parser", "main"]

COMMANDS_GROUP = "rps.commands"

logger = logging.getLogger("rps")


def _add_plugin_commands(subparsers: argparse._SubParsersAction) -> None:
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        try:
            add_commands = entry_point.load()
        except ImportError as error:  # a half-installed plugin must not break the client
            print(f"rps: commands {entry_point.name!r} unavailable: {error}", file=sys.stderr)
            continue
        add_commands(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """The full ``rps`` argument parser: client commands plus every installed plugin's."""
    parser = argparse.ArgumentParser(
        prog="rps", description="Representer-point explanation service"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_plugin_commands(subparsers)
    add_client_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rps`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
