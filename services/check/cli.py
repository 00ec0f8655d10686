"""``orderbridge check``: validate settings and routes, reach the broker and the state store."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="validate settings and routes, reach the broker and the state store, and report",
        description="Validate every ORDERBRIDGE_* setting and the consumer routes, connect to "
        "RabbitMQ (and see whether it has the consistent-hash exchange) and to the state "
        "store, then print a short report. Exits 0 when all is well, else with the code of "
        "the first problem (78 settings or routes, 77 refused login, 69 unreachable).",
    )
    parser.add_argument(
        "--config", help="routes file to validate; default: ORDERBRIDGE_CONSUMER_CONFIG"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    from services.check.report import check, render

    findings = asyncio.run(check(config=args.config))
    sys.stdout.write(render(findings))
    sys.stdout.flush()
    return next((finding.code for finding in findings if finding.code), 0)
