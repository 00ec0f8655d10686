"""The ``orderbridge`` command: one subcommand per service, plus tools.

Each service package contributes its subcommand through a ``register``
function in its ``cli`` module (imports stay light; the service's composition
root is imported only when its subcommand runs).

Whatever stops a subcommand at start (an invalid setting, a bad routes file, a
broker or state store that refused or could not be reached) reaches ``main``,
which prints it as one line naming the variable and exits with its code
(``shared.fatal``), the same way for every subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules exposing ``register(subparsers)``, one per line; order is the order of ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "services.ingress.cli",
    "services.poller.cli",
    "services.apicbase_fetcher.cli",
    "services.consumers.cli",
    "services.consumers.ops_cli",
    "services.simulators.cli",
    "services.runner.cli",
    "services.check.cli",
)


def _schema(_: argparse.Namespace) -> int:
    from shared.schema.export import render

    sys.stdout.write(render().decode())
    return 0


def _asyncapi(_: argparse.Namespace) -> int:
    from shared.schema.asyncapi import render

    sys.stdout.write(render().decode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderbridge",
        description="Tradecloud and Apicbase orders into your ERP: exactly once, in order.",
    )
    parser.add_argument("--version", action="version", version=f"orderbridge {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    schema = commands.add_parser("schema", help="print the canonical event JSON Schema")
    schema.set_defaults(func=_schema)
    asyncapi = commands.add_parser(
        "asyncapi", help="print the AsyncAPI document of orderbridge.events (YAML)"
    )
    asyncapi.set_defaults(func=_asyncapi)
    return parser


def version() -> str:
    """The installed package's version (package metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("orderbridge")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    from shared.fatal import FATAL, report

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except FATAL as exc:
        return report(args.command, exc)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
