"""``orderbridge poller``: poll Tradecloud for changed orders and shipments (imports stay light)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "poller",
        help="poll Tradecloud orders and shipments after a durable cursor",
        description="Poll Tradecloud's order and shipment poll endpoints from the stored "
        "cursor (ORDERBRIDGE_POLL_START on the first run), publish every document with a "
        "broker confirm, then commit the cursor. Settings come from ORDERBRIDGE_* variables.",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="drain every stream's backlog once, then exit (0 when all drained)",
    )
    parser.add_argument(
        "--stream",
        action="append",
        choices=("orders", "shipments"),
        help="poll only this stream (repeatable; default ORDERBRIDGE_POLL_STREAMS)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from services.poller.__main__ import run
    from shared.progress import wanted

    progress = args.once and not args.no_progress and wanted()
    return run(once=args.once, streams=args.stream, progress=progress)
