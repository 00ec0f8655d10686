"""``orderbridge simulate tradecloud``: the Tradecloud API v2 simulator as a server."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULTS: dict[str, Any] = {
    "port": 8090,
    "orders": 100,
    "username": "integration@buyer.example",
    "password": "secret",
}


def register(platforms: Any) -> None:
    parser: argparse.ArgumentParser = platforms.add_parser(
        "tradecloud",
        help="Tradecloud API v2 simulator (poll, GET by id, JWT auth, webhooks, faults)",
        description="Serves the Tradecloud API v2 under /v2 and a control API under /_control.",
    )
    _server_arguments(parser, port=DEFAULTS["port"], orders=DEFAULTS["orders"])
    parser.add_argument(
        "--username", default=DEFAULTS["username"], help="integration user (%(default)s)"
    )
    parser.add_argument(
        "--password", default=DEFAULTS["password"], help="its password (%(default)s)"
    )
    parser.add_argument(
        "--access-ttl",
        type=float,
        default=3600.0,
        help="access token lifetime in seconds (%(default)s)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=10.0,
        help="API requests per second per client (%(default)s)",
    )
    parser.add_argument(
        "--documented",
        action="store_true",
        help="documented-behaviour mode: what the docs allow beyond our assumptions "
        "(header-only and unsubscribed changes, shared versions, zone-less stamps, "
        "out-of-order webhooks, polls without total, deletions)",
    )
    parser.add_argument(
        "--omit-total-share",
        type=float,
        default=None,
        help="share of poll answers without total, 1 = all (default: 0.25 with "
        "--documented, else 0)",
    )
    drive = parser.add_argument_group("driving a flow (demo)")
    drive.add_argument(
        "--drive-rate",
        type=float,
        default=0.0,
        help="lifecycle changes (new orders, steps) per second after start; 0 = none",
    )
    drive.add_argument("--webhook-orders-url", help="push order events to this URL")
    drive.add_argument("--webhook-documents-url", help="push order-documents events here")
    drive.add_argument("--webhook-shipments-url", help="push shipment events here")
    drive.add_argument("--webhook-username", help="Basic auth user for the pushes")
    drive.add_argument("--webhook-password", help="Basic auth password for the pushes")
    drive.add_argument("--webhook-token", help="static Bearer token for the pushes")
    drive.add_argument(
        "--single-delivery", action="store_true", help="push singleDeliveryOrderEvent bodies"
    )
    drive.add_argument(
        "--webhook-method",
        choices=("POST", "PUT", "GET"),
        default="POST",
        help="POST (today's only method), PUT or GET (legacy: no body, the document id "
        "substituted into an {orderId} / {shipmentId} placeholder of the URL) (%(default)s)",
    )
    drive.add_argument(
        "--webhook-meta",
        choices=("top", "inside", "both"),
        default="top",
        help="message meta beside eventName, inside the event, or both (%(default)s)",
    )
    drive.add_argument(
        "--webhook-max-backoff",
        type=float,
        default=30.0,
        help="cap of the retry backoff for answers above 500, retried forever (%(default)s s)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from services.simulators.tradecloud.__main__ import serve

    return serve(args)


def _server_arguments(parser: argparse.ArgumentParser, *, port: int, orders: int) -> None:
    """Where to listen and which world to start with."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (%(default)s)")
    parser.add_argument("--port", type=int, default=port, help="port; 0 = any free (%(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="world seed (%(default)s)")
    parser.add_argument(
        "--orders", type=int, default=orders, help="orders in the world at start (%(default)s)"
    )
    parser.add_argument(
        "--wall-clock",
        action="store_true",
        help="stamp what happens after start with the real time (default: the seeded clock)",
    )
