"""``orderbridge consumer`` (``dlq``, ``replay`` and ``invalid``: ``ops_cli``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
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
    consumer.set_defaults(func=_consumer)


def _setup(service: str) -> None:
    from shared.logging import configure_logging
    from shared.settings import LogSettings

    configure_logging(LogSettings(), service=service)


def _consumer(args: argparse.Namespace) -> int:
    from services.consumers.__main__ import resolve_config, run
    from services.consumers.settings import ConsumerSettings
    from shared.errors import ConfigurationError

    _setup("consumer")
    try:
        settings = ConsumerSettings()
        config = resolve_config(args.config, settings)
        return asyncio.run(run(config, route_names=args.route, drain=args.drain, settings=settings))
    except ConfigurationError as exc:
        sys.stderr.write(f"orderbridge consumer: {exc}\n")
        return 2
