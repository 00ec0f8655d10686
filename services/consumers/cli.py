"""``orderbridge consumer`` (``dlq``, ``replay`` and ``invalid``: ``ops_cli``)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def register(commands: Any) -> None:
    consumer: argparse.ArgumentParser = commands.add_parser(
        "consumer", help="apply events to ERP adapters, route by route"
    )
    consumer.add_argument(
        "--config", help="routes file (TOML or YAML); default: ORDERBRIDGE_CONSUMER_CONFIG"
    )
    consumer.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this route (repeatable); default: every route",
    )
    consumer.add_argument(
        "--drain",
        action="store_true",
        help="process until the routes' queues are empty, then exit 0",
    )
    consumer.add_argument(
        "--reshard",
        action="store_true",
        help="first give routes created without the consistent-hash plugin their shards "
        "(their consumers stopped, their queues empty)",
    )
    consumer.set_defaults(func=_consumer)


def _setup(service: str) -> None:
    from shared.logging import configure_logging
    from shared.settings import LogSettings

    configure_logging(LogSettings(), service=service)


def _consumer(args: argparse.Namespace) -> int:
    from services.consumers.__main__ import resolve_config, run
    from services.consumers.settings import ConsumerSettings

    _setup("consumer")
    settings = ConsumerSettings()
    config = resolve_config(args.config, settings)
    return asyncio.run(
        run(
            config,
            route_names=args.route,
            drain=args.drain,
            reshard=args.reshard,
            settings=settings,
        )
    )
