"""``orderbridge run``: every service as supervised child processes (imports stay light)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run every service as supervised child processes (--demo: with both simulators)",
        description="Start ingress, poller, apicbase-fetcher and consumer as child processes "
        "(restarted when they die, stopped gracefully on Ctrl-C). --demo also starts both "
        "simulators driving an order flow, a private RabbitMQ when none answers, and a "
        "consumer writing every order and shipment to ./erp-inbox.",
    )
    parser.add_argument("--demo", action="store_true", help="the self-contained demo")
    parser.add_argument(
        "--workdir", type=Path, default=Path(".orderbridge"), help="demo state (.orderbridge)"
    )
    parser.add_argument(
        "--inbox",
        type=Path,
        default=None,
        help="demo ERP inbox (default: ORDERBRIDGE_ERP_INBOX, else ./erp-inbox)",
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="demo: add this to every port (ingress 8080, simulators 8090/8091, metrics 9101-9104)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from services.runner.__main__ import run

    return run(demo=args.demo, workdir=args.workdir, inbox=args.inbox, port_offset=args.port_offset)
