"""``orderbridge consumer`` and ``orderbridge dlq list|replay``."""

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
    consumer.add_argument(
        "--reshard",
        action="store_true",
        help="first give routes created without the consistent-hash plugin their shards "
        "(their consumers stopped, their queues empty)",
    )
    consumer.set_defaults(func=_consumer)

    dlq: argparse.ArgumentParser = commands.add_parser(
        "dlq", help="inspect and replay a route's dead letters"
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show dead letters with their reasons")
    listing.add_argument("route")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_list)
    again = actions.add_parser("replay", help="republish dead letters to the route")
    again.add_argument("route")
    chosen = again.add_mutually_exclusive_group(required=True)
    chosen.add_argument(
        "--id",
        action="append",
        dest="ids",
        metavar="MESSAGE_ID",
        help="a message id to replay (repeatable)",
    )
    chosen.add_argument("--all", action="store_true", help="replay every dead letter")
    again.set_defaults(func=_replay)


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


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from services.consumers import dlq
    from shared.broker.connection import connect
    from shared.settings import BrokerSettings

    async def main() -> int:
        connection = await connect(BrokerSettings(), name="dlq", wait_seconds=5)
        try:
            total = await dlq.count(connection, args.route)
            letters = await dlq.list_dead_letters(connection, args.route, limit=args.limit)
        finally:
            await connection.close()
        table = Table(title=f"{args.route}: {total} dead letter(s)")
        for column in ("message id", "document", "routing key", "reason", "attempts", "error"):
            table.add_column(column, overflow="fold")
        for letter in letters:
            table.add_row(
                letter.message_id,
                letter.document_id,
                letter.routing_key,
                letter.reason,
                str(letter.attempts),
                letter.error[:200],
            )
        Console().print(table)
        return 0

    return asyncio.run(main())


def _replay(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from services.consumers import dlq
    from shared.broker.connection import connect
    from shared.settings import BrokerSettings

    async def main() -> int:
        broker = BrokerSettings()
        connection = await connect(broker, name="dlq", wait_seconds=5)
        try:
            total = await dlq.count(connection, args.route)
            with Progress(transient=False) as progress:
                task = progress.add_task(f"replaying {args.route}", total=total)
                replayed = await dlq.replay(
                    connection,
                    broker,
                    args.route,
                    ids=None if args.all else set(args.ids),
                    progress=lambda _letter, _chosen: progress.advance(task),
                )
        finally:
            await connection.close()
        sys.stdout.write(f"replayed {replayed} dead letter(s) of {args.route}\n")
        if args.ids and replayed < len(set(args.ids)):
            sys.stderr.write("some ids were not found in the dead-letter queue\n")
            return 1
        return 0

    return asyncio.run(main())
