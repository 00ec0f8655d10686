"""``orderbridge ingress``: serve the webhook endpoints (imports stay light)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ingress",
        help="serve the Tradecloud and Apicbase webhooks (202 only after the broker confirm)",
        description="Serve the Tradecloud and Apicbase webhook endpoints. Settings come from "
        "ORDERBRIDGE_* environment variables; flags override them.",
    )
    parser.add_argument("--host", help="listen address (ORDERBRIDGE_INGRESS_HOST, 0.0.0.0)")
    parser.add_argument("--port", type=int, help="listen port (ORDERBRIDGE_INGRESS_PORT, 8080)")
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="development only: start without credentials; sources without them accept "
        "unauthenticated calls (ORDERBRIDGE_INGRESS_INSECURE_NO_AUTH)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from services.ingress.__main__ import run

    return run(host=args.host, port=args.port, insecure=args.insecure_no_auth)
