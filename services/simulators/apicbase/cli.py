"""``orderbridge simulate apicbase``: the Apicbase supplier-ordering simulator as a server."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 8091,
    "seed": 1,
    "orders": 100,
    "client_id": "orderbridge",
    "client_secret": "secret",
    "refresh_token": "simulated-refresh-token",
}


def register(platforms: Any) -> None:
    parser: argparse.ArgumentParser = platforms.add_parser(
        "apicbase",
        help="Apicbase simulator (OAuth2, supplier purchase orders, signed webhooks, faults)",
        description=(
            "Serves POST /oauth/token/ and /api/v2/integrations/suppliers/purchase_orders/ "
            "(GET, PATCH), pushes signed order webhooks, and a control API under /_control."
        ),
    )
    parser.add_argument("--host", default=DEFAULTS["host"], help="listen address (%(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULTS["port"], help="port (%(default)s)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"], help="order generator seed (%(default)s)"
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=DEFAULTS["orders"],
        help="orders in the generated history (%(default)s; the newest two thirds unfetched)",
    )
    parser.add_argument(
        "--client-id", default=DEFAULTS["client_id"], help="OAuth client id (%(default)s)"
    )
    parser.add_argument(
        "--client-secret",
        default=DEFAULTS["client_secret"],
        help="OAuth client secret, also the webhook signature key (%(default)s)",
    )
    parser.add_argument(
        "--refresh-token",
        default=DEFAULTS["refresh_token"],
        help="a refresh token accepted from the start, as the Apicbase UI would generate "
        "(%(default)s); set ORDERBRIDGE_APICBASE_REFRESH_TOKEN to it",
    )
    parser.add_argument(
        "--access-ttl",
        type=float,
        default=7 * 24 * 3600.0,
        help="access token lifetime in seconds (%(default)s: a week)",
    )
    parser.add_argument(
        "--no-rotate-refresh-tokens",
        dest="rotate_refresh_tokens",
        action="store_false",
        help="keep the refresh token on refresh (default: rotate it, the old one dies)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=100,
        help="API requests per window per OAuth client (%(default)s)",
    )
    parser.add_argument(
        "--rate-window", type=float, default=60.0, help="rate-limit window in seconds (%(default)s)"
    )
    parser.add_argument(
        "--documented",
        action="store_true",
        help="documented-behaviour mode: webhook and API copies that differ in formatting, "
        "lost webhook answers and orders placed again with the same id",
    )
    hook = parser.add_argument_group("webhook and driving a flow (demo)")
    hook.add_argument("--webhook-url", help="push orders placed by webhook to this URL")
    hook.add_argument(
        "--webhook-key", help="signature key if Apicbase arranged one (default: the client secret)"
    )
    hook.add_argument(
        "--webhook-pretty",
        action="store_true",
        help="send pretty-printed UTF-8 bodies (still signed over the json.dumps form)",
    )
    hook.add_argument(
        "--drive-interval",
        type=float,
        default=0.0,
        help="create an order every N seconds; 0 = never (%(default)s)",
    )
    hook.add_argument(
        "--webhook-share",
        type=float,
        default=0.5,
        help="share of driven orders pushed by webhook, the rest left for the API (%(default)s)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from services.simulators.apicbase.__main__ import serve

    return serve(args)
