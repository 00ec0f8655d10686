"""What an operator reaches for: ``orderbridge replay``, ``dlq …`` and ``invalid …``.

* ``replay --route NAME --from POS [--until POS] [--routing-key PATTERN] [--dry-run]``
  re-publishes archived events to one route (``replay``, ``selection``).
* ``dlq list|show|replay|purge ROUTE`` works on the route's dead-letter queue.
* ``invalid list|show|purge`` works on the ``orderbridge.invalid`` quarantine
  (documents a poller, fetcher or GET webhook could not normalize); it has no
  ``replay``: a quarantined document is raw upstream data, fixed upstream and
  brought by the next poll, not re-sent from here.

Every ``dlq`` and ``invalid`` command takes ``--json`` (one JSON document on
stdout; replay's summary too). Exit codes are ``shared.exit_codes``: an unknown
route is ``USAGE``, a missing argument ``ARGUMENTS``, a broker that cannot be
reached ``UNAVAILABLE``, an unreadable routes file ``CONFIG``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import exit_codes

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from services.consumers.config import ConsumerConfig


class Refused(Exception):
    """A command that cannot run as asked: its one-line message and exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def register(commands: Any) -> None:
    _register_replay(commands)
    _register_dlq(commands)
    _register_invalid(commands)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="routes file (TOML or YAML); default: ORDERBRIDGE_CONSUMER_CONFIG"
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def _register_replay(commands: Any) -> None:
    replay: argparse.ArgumentParser = commands.add_parser(
        "replay",
        help="re-publish archived events to one route",
        description="Read the archive stream from --from to --until (default: its end when "
        "the command starts) and publish to the route's exchange the events the route would "
        "have taken (its bindings and filter), confirmed one by one. Safe to repeat: the "
        "route's ledger turns what the ERP already has into duplicates.",
    )
    _config_option(replay)
    replay.add_argument("--route", metavar="NAME", help="the route to replay to (required)")
    replay.add_argument(
        "--routing-key",
        metavar="PATTERN",
        help="only events whose routing key matches this topic pattern (* one word, # any); "
        "narrows what --route takes, never widens it",
    )
    replay.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="POS",
        help="where to start: an offset, 'first', a time (ISO 8601, UTC without a zone) "
        "or an age (90s, 30m, 2h, 7d)",
    )
    replay.add_argument("--until", metavar="POS", help="where to stop (inclusive), as --from")
    replay.add_argument("--dry-run", action="store_true", help="count what would go where")
    _json_option(replay)
    replay.set_defaults(func=_replay)


def _register_dlq(commands: Any) -> None:
    dlq: argparse.ArgumentParser = commands.add_parser(
        "dlq", help="inspect, replay and purge a route's dead letters"
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show dead letters with their reasons")
    listing.add_argument("route")
    listing.add_argument("--limit", type=int, default=100)
    show = actions.add_parser("show", help="one dead letter's headers and body")
    show.add_argument("route")
    show.add_argument("message_id", metavar="MESSAGE_ID")
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
    purge = actions.add_parser("purge", help="drop every dead letter of the route")
    purge.add_argument("route")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for parser, func in ((listing, _dlq_list), (show, _dlq_show), (again, _dlq_replay)):
        _config_option(parser)
        _json_option(parser)
        parser.set_defaults(func=func)
    _config_option(purge)
    _json_option(purge)
    purge.set_defaults(func=_dlq_purge)


def _register_invalid(commands: Any) -> None:
    invalid: argparse.ArgumentParser = commands.add_parser(
        "invalid", help="inspect and purge quarantined documents (orderbridge.invalid)"
    )
    actions = invalid.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show quarantined documents with their reasons")
    listing.add_argument("--limit", type=int, default=100)
    show = actions.add_parser("show", help="one quarantined document's headers and body")
    show.add_argument("message_id", metavar="MESSAGE_ID")
    purge = actions.add_parser("purge", help="drop every quarantined document")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for parser, func in ((listing, _invalid_list), (show, _invalid_show), (purge, _invalid_purge)):
        _json_option(parser)
        parser.set_defaults(func=func)


# ------------------------------------------------------------------ running a command


def _run(
    command: str,
    args: argparse.Namespace,
    body: Callable[[AbstractRobustConnection], Awaitable[int]],
) -> int:
    """Logging, one broker connection, and every refusal as one line with its exit code."""
    from shared.broker.connection import connect
    from shared.errors import BrokerUnavailable, ConfigurationError
    from shared.fatal import report
    from shared.logging import configure_logging
    from shared.settings import BrokerSettings, LogSettings

    configure_logging(LogSettings(), service=command.split()[0])

    async def main() -> int:
        connection = await connect(BrokerSettings(), name=command.replace(" ", "-"), wait_seconds=5)
        try:
            return await body(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(main())
    except Refused as refused:
        return report(command, refused, code=refused.code)
    except (ConfigurationError, BrokerUnavailable) as exc:
        return report(command, exc)


def _routes(args: argparse.Namespace) -> ConsumerConfig | None:
    """The routes file from --config or ORDERBRIDGE_CONSUMER_CONFIG, None when neither is set."""
    from services.consumers.config import load_config
    from services.consumers.settings import ConsumerSettings

    chosen = args.config or ConsumerSettings().consumer_config
    return load_config(chosen) if chosen else None


def _unknown_route(name: str, config: ConsumerConfig) -> Refused:
    known = ", ".join(route.name for route in config.routes)
    return Refused(f"no route named {name!r} (known routes: {known})", exit_codes.USAGE)


def _write_json(value: Any) -> None:
    from services.consumers.dlq import dumps

    sys.stdout.write(dumps(value).decode() + "\n")


def _confirm(question: str, *, yes: bool) -> None:
    """Ask on the terminal unless ``--yes``; without a terminal, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Refused(f"{question}: pass --yes (no terminal to ask)", exit_codes.ARGUMENTS)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Refused("nothing purged", exit_codes.FAILURE)


# ------------------------------------------------------------------ replay


def _replay(args: argparse.Namespace) -> int:
    from services.consumers.replay import RouteNotDeclared, replay
    from services.consumers.selection import check_pattern, check_window, parse_position
    from shared.errors import ConfigurationError
    from shared.fatal import report
    from shared.progress import Board
    from shared.settings import BrokerSettings

    def prepare() -> tuple[Any, ...]:
        config = _routes(args)
        if config is None:
            raise Refused(
                "no routes: pass --config FILE or set ORDERBRIDGE_CONSUMER_CONFIG",
                exit_codes.CONFIG,
            )
        if args.route is None:
            known = ", ".join(route.name for route in config.routes)
            raise Refused(
                "--route NAME is required: a replay goes to one route's queues "
                f"(--routing-key only narrows what that route gets; known routes: {known})",
                exit_codes.ARGUMENTS,
            )
        if args.route not in {route.name for route in config.routes}:
            raise _unknown_route(args.route, config)
        now = datetime.now(UTC)
        try:
            start = parse_position(args.start, now=now)
            until = None if args.until is None else parse_position(args.until, now=now)
            check_window(start, until)
            pattern = None if args.routing_key is None else check_pattern(args.routing_key)
        except ValueError as exc:
            raise Refused(str(exc), exit_codes.ARGUMENTS) from None
        return config.route(args.route), start, until, pattern

    async def body(connection: AbstractRobustConnection) -> int:
        route, start, until, pattern = prepared
        with Board(enabled=False if args.json else None) as board:
            bar = board.bar(f"{'counting' if args.dry_run else 'replaying'} {route.name}")
            sized = False

            def moved(result: Any) -> None:
                nonlocal sized
                if not sized and result.first is not None and result.end is not None:
                    bar.update(total=result.end - result.first + 1)
                    sized = True
                bar.update(
                    completed=result.read,
                    note=f"{result.matched} matched, {result.published} published",
                )

            try:
                result = await replay(
                    connection,
                    BrokerSettings(),
                    route,
                    start=start,
                    until=until,
                    pattern=pattern,
                    dry_run=args.dry_run,
                    progress=moved,
                )
            except RouteNotDeclared as exc:
                raise Refused(str(exc), exit_codes.USAGE) from None
        if args.json:
            _write_json(result.as_json())
        else:
            if args.dry_run:
                for key, count in sorted(result.by_routing_key.items()):
                    sys.stdout.write(f"{count:>8}  {key} → {result.exchange}\n")
            sys.stdout.write(result.summary() + "\n")
        return exit_codes.OK

    try:
        prepared = prepare()
    except Refused as refused:
        return report("replay", refused, code=refused.code)
    except ConfigurationError as exc:  # the routes file
        return report("replay", exc)
    return _run("replay", args, body)


# ------------------------------------------------------------------ dlq


async def _dlq_queue(args: argparse.Namespace, connection: AbstractRobustConnection) -> str:
    """The route's dead-letter queue, or ``Refused`` naming the unknown route."""
    from services.consumers import dlq
    from services.consumers.topology import dead_letter_queue

    config = _routes(args)
    if config is not None:
        if args.route not in {route.name for route in config.routes}:
            raise _unknown_route(args.route, config)
        return dead_letter_queue(args.route)
    if await dlq.queue_count(connection, dead_letter_queue(args.route)) is None:
        raise Refused(
            f"no route named {args.route!r} on this broker (no queue "
            f"{dead_letter_queue(args.route)}; known routes: pass --config FILE or set "
            "ORDERBRIDGE_CONSUMER_CONFIG to list them)",
            exit_codes.USAGE,
        )
    return dead_letter_queue(args.route)


def _dlq_list(args: argparse.Namespace) -> int:
    from services.consumers import dlq

    async def body(connection: AbstractRobustConnection) -> int:
        queue = await _dlq_queue(args, connection)
        total = await dlq.queue_count(connection, queue)
        letters = (
            []
            if total is None
            else await dlq.list_dead_letters(connection, args.route, limit=args.limit)
        )
        if args.json:
            _write_json(
                {
                    "route": args.route,
                    "queue": queue,
                    "total": total or 0,
                    "dead_letters": [letter.as_json() for letter in letters],
                }
            )
            return exit_codes.OK
        _table(
            f"{args.route}: {total or 0} dead letter(s)",
            ("message id", "document", "routing key", "reason", "attempts", "error"),
            [
                (
                    letter.message_id,
                    letter.document_id,
                    letter.routing_key,
                    letter.reason,
                    str(letter.attempts),
                    letter.error[:200],
                )
                for letter in letters
            ],
        )
        return exit_codes.OK

    return _run("dlq list", args, body)


def _dlq_show(args: argparse.Namespace) -> int:
    async def body(connection: AbstractRobustConnection) -> int:
        queue = await _dlq_queue(args, connection)
        return await _show(connection, queue, args, what=f"dead letter of {args.route}")

    return _run("dlq show", args, body)


def _dlq_replay(args: argparse.Namespace) -> int:
    from services.consumers import dlq
    from shared.progress import Board
    from shared.settings import BrokerSettings

    async def body(connection: AbstractRobustConnection) -> int:
        queue = await _dlq_queue(args, connection)
        total = await dlq.queue_count(connection, queue) or 0
        with Board(enabled=False if args.json else None) as board:
            bar = board.bar(f"replaying {args.route}", total=total)
            replayed = (
                await dlq.replay(
                    connection,
                    BrokerSettings(),
                    args.route,
                    ids=None if args.all else set(args.ids),
                    progress=lambda _letter, _chosen: bar.advance(),
                )
                if total
                else 0  # nothing dead-lettered (perhaps no queue yet)
            )
        missing = max(len(set(args.ids or ())) - replayed, 0)
        if args.json:
            _write_json({"route": args.route, "replayed": replayed, "not_found": missing})
        else:
            sys.stdout.write(f"replayed {replayed} dead letter(s) of {args.route}\n")
        if missing:
            sys.stderr.write(f"{missing} id(s) were not found in the dead-letter queue\n")
            return exit_codes.FAILURE
        return exit_codes.OK

    return _run("dlq replay", args, body)


def _dlq_purge(args: argparse.Namespace) -> int:
    async def body(connection: AbstractRobustConnection) -> int:
        queue = await _dlq_queue(args, connection)
        return await _purge(connection, queue, args, what=f"dead letter(s) of {args.route}")

    return _run("dlq purge", args, body)


# ------------------------------------------------------------------ invalid


def _invalid_list(args: argparse.Namespace) -> int:
    from services.consumers import dlq
    from shared.broker.quarantine import REASON_HEADER
    from shared.broker.topology import INVALID_QUEUE

    async def body(connection: AbstractRobustConnection) -> int:
        total = await dlq.queue_count(connection, INVALID_QUEUE) or 0
        found = await dlq.read(connection, INVALID_QUEUE, limit=args.limit) if total else []
        rows: list[dict[str, str]] = [
            {
                "message_id": item.message_id,
                "source": str(item.headers.get("source") or ""),
                "kind": str(item.headers.get("kind") or ""),
                "reason": str(item.headers.get(REASON_HEADER) or ""),
                "quarantined_at": item.timestamp.isoformat() if item.timestamp else "",
            }
            for item in found
        ]
        if args.json:
            _write_json({"queue": INVALID_QUEUE, "total": total, "documents": rows})
            return exit_codes.OK
        _table(
            f"{INVALID_QUEUE}: {total} quarantined document(s)",
            ("message id", "source", "kind", "quarantined at", "reason"),
            [
                (
                    row["message_id"],
                    row["source"],
                    row["kind"],
                    row["quarantined_at"],
                    row["reason"][:200],
                )
                for row in rows
            ],
        )
        return exit_codes.OK

    return _run("invalid list", args, body)


def _invalid_show(args: argparse.Namespace) -> int:
    from shared.broker.topology import INVALID_QUEUE

    async def body(connection: AbstractRobustConnection) -> int:
        return await _show(connection, INVALID_QUEUE, args, what="quarantined document")

    return _run("invalid show", args, body)


def _invalid_purge(args: argparse.Namespace) -> int:
    from shared.broker.topology import INVALID_QUEUE

    async def body(connection: AbstractRobustConnection) -> int:
        return await _purge(connection, INVALID_QUEUE, args, what="quarantined document(s)")

    return _run("invalid purge", args, body)


# ------------------------------------------------------------------ shared by dlq and invalid


async def _show(
    connection: AbstractRobustConnection, queue: str, args: argparse.Namespace, *, what: str
) -> int:
    from services.consumers import dlq

    found = await dlq.read(connection, queue, ids={args.message_id})
    if not found:
        raise Refused(f"no {what} with message id {args.message_id!r} in {queue}", exit_codes.USAGE)
    if args.json:
        _write_json({"queue": queue, "messages": [item.as_json() for item in found]})
        return exit_codes.OK
    for item in found:  # the same event may have been dead-lettered more than once
        shown = item.as_json()
        sys.stdout.write(f"message id:  {shown['message_id']}\n")
        sys.stdout.write(f"routing key: {shown['routing_key']}\n")
        sys.stdout.write(f"timestamp:   {shown['timestamp'] or ''}\n")
        sys.stdout.write(f"type:        {shown['type'] or ''}\n")
        sys.stdout.write("headers:\n")
        for key, value in shown["headers"].items():
            sys.stdout.write(f"  {key}: {dlq.dumps(value).decode()}\n")
        sys.stdout.write(f"body ({shown['body_encoding']}):\n")
        if shown["body_encoding"] == "json":
            sys.stdout.write(dlq.dumps(shown["body"], pretty=True).decode() + "\n")
        else:
            sys.stdout.write(str(shown["body"]) + "\n")
    return exit_codes.OK


async def _purge(
    connection: AbstractRobustConnection, queue: str, args: argparse.Namespace, *, what: str
) -> int:
    from services.consumers import dlq

    waiting = await dlq.queue_count(connection, queue) or 0
    if waiting == 0:
        purged = 0
    else:
        _confirm(f"purge {waiting} {what} from {queue}?", yes=args.yes)
        purged = await dlq.purge(connection, queue)
    if args.json:
        _write_json({"queue": queue, "purged": purged})
    else:
        sys.stdout.write(f"purged {purged} {what} from {queue}\n")
    return exit_codes.OK


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
