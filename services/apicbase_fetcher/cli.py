"""``orderbridge apicbase-fetcher``: fetch Apicbase purchase orders (imports stay light)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "apicbase-fetcher",
        help="fetch ORDERED Apicbase purchase orders not yet fetched, then mark them fetched",
        description="List the supplier's ORDERED Apicbase purchase orders with "
        "fetched_by_supplier=false, publish each with a broker confirm, then mark it "
        "fetched (never viewed). Settings come from ORDERBRIDGE_* variables.",
    )
    parser.add_argument(
        "--once", action="store_true", help="fetch until nothing is left, then exit"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from services.apicbase_fetcher.__main__ import run

    return run(once=args.once)
