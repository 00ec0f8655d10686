"""What a route does with each message, decided in pure code (tested by tables).

Two questions, answered without any I/O:

1. **What does this event change in the ERP?** (``decide``) In order:
   *filtered* (the route's kinds, event names, line statuses, requests), *duplicate* (a
   webhook delivery already applied: its retry), then part by part
   (``shared.applied``): the header applies when it is news, each line when
   it is news and, on a route that skips echoes, not an echo of our own open
   request. Nothing news left → *stale* (some part older than applied), *echo*
   (only echo lines carried news) or *duplicate* (the ERP has it all: a
   redelivery, webhook + poll overlap, a replay, a resend). Otherwise *apply*,
   with the header flag, the lines to hand to the adapter and what to record
   once the adapter succeeded.
2. **What becomes of the message after a failure?** (``after_failure``) A
   permanent error dead-letters at once; a retryable one (or anything
   unexpected) goes to the next delay queue with the attempt counter + 1, and
   after the last delay to the dead-letter queue (``retries_exhausted``); an
   undecodable body is dead-lettered as ``invalid``.

The runner executes these decisions against the broker (``runner.RouteBroker``);
``dlq`` reads the headers they leave behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from services.consumers.config import Route, RouteFilter
from services.consumers.topology import retry_queue
from shared.applied import (
    HEADER,
    PartState,
    change_key,
    delivery_key,
    document_key,
    event_items,
    parts_of,
    verdict,
    worth_recording,
)
from shared.errors import PermanentError
from shared.schema.models import CanonicalEvent, OrderLine, Request
from shared.state.port import AppliedDocument, Lookup, Record

Outcome = Literal["apply", "filtered", "duplicate", "echo", "stale"]

ATTEMPT: Final = "x-orderbridge-attempt"
REASON: Final = "x-orderbridge-reason"
ERROR: Final = "x-orderbridge-error"
ATTEMPTS: Final = "x-orderbridge-attempts"
ROUTING_KEY: Final = "x-orderbridge-routing-key"
ROUTE: Final = "x-orderbridge-route"
DEAD_AT: Final = "x-orderbridge-dead-lettered-at"
REPLAYED: Final = "x-orderbridge-replayed"
FAILURE_HEADERS: Final = (
    ATTEMPT,
    REASON,
    ERROR,
    ATTEMPTS,
    ROUTE,
    DEAD_AT,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)
"""Headers a failure adds; a replay strips them so the event starts afresh."""


# ------------------------------------------------------------------ what an event changes


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    header: bool = False
    """Whether the ERP gets the header (it is news)."""
    lines: tuple[str, ...] = ()
    """Keys of the items the ERP gets, in document order: lines (``shared.applied.line_key``),
    or the attached documents of an order-documents event."""
    record: Record | None = None
    """What to record once the adapter succeeded (only when applying)."""
    change: str = ""
    """The application's identity (``shared.applied.change_key``): adapters dedupe on it."""
    every_item: bool = False
    """True when every item of the event applies (the adapter may take it as published)."""

    @property
    def applies(self) -> bool:
        return self.outcome == "apply"


def lookup_for(event: CanonicalEvent) -> Lookup:
    """The ledger question ``decide`` needs answered for ``event``."""
    return Lookup(delivery_key(event), document_key(event))


def passes_filter(event: CanonicalEvent, route: Route) -> bool:
    """Whether ``event`` meets the route's filter (``config.RouteFilter``).

    Line conditions hold for one and the same line among the changed ones (all
    lines when none is marked changed); request conditions for one request of
    that line. An event without order lines (a shipment, order documents) meets
    no line condition.
    """
    rules = route.filter
    if rules.kinds and event.kind not in rules.kinds:
        return False
    if rules.event_names and event.event_name not in rules.event_names:
        return False
    if rules.on_lines:
        lines = event.order.lines if event.order is not None else []
        changed = [line for line in lines if line.changed is not False] or lines
        if not any(_line_passes(line, rules) for line in changed):
            return False
    return True


def _line_passes(line: OrderLine, rules: RouteFilter) -> bool:
    if rules.line_process_statuses and line.process_status not in rules.line_process_statuses:
        return False
    if (
        rules.line_in_progress_statuses
        and line.in_progress_status not in rules.line_in_progress_statuses
    ):
        return False
    return not rules.on_requests or any(_request_passes(ask, rules) for ask in line.requests)


def _request_passes(request: Request, rules: RouteFilter) -> bool:
    return (
        (not rules.request_sides or request["side"] in rules.request_sides)
        and (not rules.request_kinds or request["kind"] in rules.request_kinds)
        and (not rules.request_statuses or request["status"] in rules.request_statuses)
    )


def decide(
    event: CanonicalEvent, route: Route, *, delivered: bool, applied: AppliedDocument | None
) -> Decision:
    """What ``event`` changes in the ERP of ``route``, given what the route applied."""
    if not passes_filter(event, route):
        return Decision("filtered", "route filter")
    if delivered:
        return Decision("duplicate", "this webhook delivery was applied (a retry)")
    known = applied.parts if applied is not None else {}
    parts = parts_of(event)
    echoes = _echo_lines(event) if route.skip_echo else frozenset()
    header = verdict(parts.header, known.get(HEADER))
    tally = {"older": 0, "known": 0, "echo": 0}
    if header != "news":
        tally[header] += 1
    lines: list[str] = []
    record: dict[str, PartState] = {}
    if header == "news":
        record[HEADER] = parts.header
    # Release 1 recorded no line it could not stamp (Apicbase packages, zone-less lines)
    # but applied it with its document: such a document's unrecorded lines are known
    # unless the document is newer than what release 1 applied.
    legacy = _legacy_without_lines(known) and header != "news"
    for key, state in parts.lines:
        if legacy and key not in known:
            tally["known"] += 1
            continue
        found = verdict(state, known.get(key))
        if found == "news" and key in echoes:
            tally["echo"] += 1
        elif found == "news":
            lines.append(key)
            record[key] = state
        else:
            tally[found] += 1
            if worth_recording(state, known.get(key)):
                record[key] = state  # known content, seen as of a newer state
    if header != "news" and not lines:
        return _nothing_new(tally)
    if header != "news" and worth_recording(parts.header, known.get(HEADER)):
        record[HEADER] = parts.header
    document = document_key(event)
    applying = {part: record[part] for part in (HEADER, *lines) if part in record}
    return Decision(
        "apply",
        _summary(header == "news", len(lines), tally),
        header=header == "news",
        lines=tuple(lines),
        record=Record(delivery_key(event), document, record),
        change=change_key(document, applying),
        every_item=len(lines) == len(parts.lines),
    )


def _legacy_without_lines(known: Mapping[str, PartState]) -> bool:
    recorded = known.get(HEADER)
    return recorded is not None and recorded.digest is None and len(known) == 1


def _echo_lines(event: CanonicalEvent) -> frozenset[str]:
    """Keys of the lines that reflect our own open request back (``OrderLine.echo``)."""
    if not event.echo.lines:  # the normalizer found none: spare the walk over the lines
        return frozenset()
    return frozenset(
        key for key, line in event_items(event) if isinstance(line, OrderLine) and line.echo
    )


def _nothing_new(tally: Mapping[str, int]) -> Decision:
    reason = "nothing new: " + _tally_text(tally)
    if tally["older"]:
        return Decision("stale", reason)
    if tally["echo"]:
        return Decision("echo", reason)
    return Decision("duplicate", reason)


def _summary(header: bool, lines: int, tally: Mapping[str, int]) -> str:
    applied = ("header, " if header else "") + f"{lines} line(s)"
    skipped = _tally_text(tally)
    return f"applies {applied}" + (f"; skips {skipped}" if skipped else "")


def _tally_text(tally: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {what}" for what, count in tally.items() if count)


# ------------------------------------------------------------------ what becomes of a message


@dataclass(frozen=True)
class Retry:
    """Send a copy to ``queue`` (a delay queue) with ``headers``, then ack the original."""

    queue: str
    delay: float
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """Send a copy to the route's dead-letter queue with ``headers``, then ack."""

    reason: str
    headers: dict[str, Any] = field(default_factory=dict)


Disposition = Retry | DeadLetter


def after_failure(
    failure: BaseException,
    *,
    route: Route,
    headers: Mapping[str, Any] | None,
    routing_key: str,
    now: str,
) -> Disposition:
    """Where a message goes when applying it failed with ``failure``."""
    attempt = attempt_of(headers)
    error = describe(failure)
    if isinstance(failure, PermanentError):
        return dead_letter(
            "permanent", error, route=route, headers=headers, routing_key=routing_key, now=now
        )
    delays = route.retry_delays
    if attempt >= len(delays):
        return dead_letter(
            "retries_exhausted",
            error,
            route=route,
            headers=headers,
            routing_key=routing_key,
            now=now,
        )
    return Retry(
        retry_queue(route.name, delays[attempt]),
        delays[attempt],
        _with(headers, routing_key, {ATTEMPT: attempt + 1, ERROR: error[:1000]}),
    )


def dead_letter(
    reason: str,
    error: str,
    *,
    route: Route,
    headers: Mapping[str, Any] | None,
    routing_key: str,
    now: str,
) -> DeadLetter:
    """A dead letter carrying the reason, the error, the attempts and the routing key."""
    return DeadLetter(
        reason,
        _with(
            headers,
            routing_key,
            {
                REASON: reason,
                ERROR: error[:2000],
                ATTEMPTS: attempt_of(headers) + 1,
                ROUTE: route.name,
                DEAD_AT: now,
            },
        ),
    )


def replay_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """A dead letter's headers for its replay: failure marks gone, marked as replayed."""
    kept = {
        key: value
        for key, value in (headers or {}).items()
        if key not in FAILURE_HEADERS and key != ROUTING_KEY
    }
    kept[REPLAYED] = True
    return kept


def _with(
    headers: Mapping[str, Any] | None, routing_key: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    merged = dict(headers or {})
    merged.setdefault(ROUTING_KEY, routing_key)
    merged.update(extra)
    return merged


def attempt_of(headers: Mapping[str, Any] | None) -> int:
    return as_int((headers or {}).get(ATTEMPT))


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
