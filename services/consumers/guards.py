"""What a route does with one event, decided in pure code.

Order of the checks (each has a table test):

1. **filter** — the route's kinds, event names and line statuses;
2. **duplicate** — the idempotency key or the upstream messageId was already
   applied by this route (redelivery, webhook + poll overlap, replay);
3. **echo** — every changed line is our own open request reflected back
   (``echo.all_changed_lines_echo``) and the route skips echoes;
4. **stale** — a *whole-document* event (poll, GET, shipment, Apicbase) older
   than what was applied (lower version, or an older ``last_updated_at`` when
   there is no version) is skipped: an older version never overwrites newer
   data. Then, for every event, lines apply one by one: a line only when its
   ``last_updated_at`` is newer than the one applied for it, so a webhook delta
   of an older version still applies its newer lines, a whole document never
   rolls back a line a later delta already set, and no line change is lost.

The result also says what to record afterwards (version, line stamps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from services.consumers.config import Route
from shared.schema.models import CanonicalEvent, OrderLine, ShipmentLine, Timestamp
from shared.state.port import AppliedDocument

Outcome = Literal["apply", "filtered", "duplicate", "echo", "stale"]
DOCUMENT_STAMP = "__document__"
"""The line-stamp key under which a whole document's own ``last_updated_at`` is kept."""


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    lines: tuple[str, ...] | None = None
    """Keys of the lines to apply; None means every line of the event."""
    stamps: dict[str, datetime] = field(default_factory=dict)
    """Line (and document) stamps to record once the adapter succeeded."""
    version: int | None = None
    """The version to record: only whole documents move a document's version mark
    (a delta's untouched lines may still be older at that version)."""

    @property
    def applies(self) -> bool:
        return self.outcome == "apply"


def document_key(event: CanonicalEvent) -> str:
    return f"{event.source}:{event.kind}:{event.document_id}"


def processed_keys(event: CanonicalEvent) -> list[str]:
    keys = [event.idempotency_key]
    if event.message_id:
        keys.append(f"message:{event.source}:{event.message_id}")
    return keys


def line_key(line: OrderLine | ShipmentLine, index: int) -> str:
    if isinstance(line, OrderLine):
        return line.line_id or line.position or f"#{index}"
    return "/".join(
        part or "-"
        for part in (
            line.purchase_order_number,
            line.purchase_order_line_position,
            line.delivery_schedule_position,
            line.despatch_advice_line_position,
        )
    )


def passes_filter(event: CanonicalEvent, route: Route) -> bool:
    rules = route.filter
    if rules.kinds and event.kind not in rules.kinds:
        return False
    if rules.event_names and event.event_name not in rules.event_names:
        return False
    if rules.line_process_statuses:
        lines = event.order.lines if event.order is not None else []
        changed = [line for line in lines if line.changed is not False] or lines
        if not any(line.process_status in rules.line_process_statuses for line in changed):
            return False
    return True


def is_whole_document(event: CanonicalEvent) -> bool:
    if event.order is not None:
        return event.order.lines_complete
    return True  # shipments always carry every line


def _utc(stamp: Timestamp | None) -> datetime | None:
    return stamp["utc"] if stamp is not None else None


def decide(
    event: CanonicalEvent,
    route: Route,
    *,
    processed: bool,
    applied: AppliedDocument | None,
) -> Decision:
    if not passes_filter(event, route):
        return Decision("filtered", "route filter")
    if processed:
        return Decision("duplicate", "idempotency key or messageId already applied")
    if route.skip_echo and event.echo.all_changed_lines_echo:
        return Decision("echo", "every changed line is an echo of our own open request")
    whole = is_whole_document(event)
    known = applied.lines if applied is not None else {}
    document_stamp = _utc(event.last_updated_at)
    if whole and applied is not None:
        if event.version is not None and applied.version is not None:
            if event.version < applied.version:
                return Decision("stale", f"version {event.version} < applied {applied.version}")
        elif event.version is None:
            newest = known.get(DOCUMENT_STAMP)
            if newest is not None and document_stamp is not None and document_stamp < newest:
                return Decision("stale", "older last_updated_at than the applied document")
    # Line by line: a line applies unless a newer (or the same) state of it was applied,
    # e.g. by a webhook delta of a later version that this whole document predates.
    lines = _lines(event)
    fresh: list[str] = []
    stamps: dict[str, datetime] = {}
    for key, line in lines:
        utc = _utc(line.last_updated_at)
        if utc is None or key not in known or utc > known[key]:
            fresh.append(key)
            if utc is not None:
                stamps[key] = utc
    if lines and not fresh:
        return Decision("stale", "every line is as old as or older than what was applied")
    if whole and document_stamp is not None:
        stamps[DOCUMENT_STAMP] = document_stamp
    return Decision(
        "apply",
        lines=None if len(fresh) == len(lines) else tuple(fresh),
        stamps=stamps,
        version=event.version if whole else None,
    )


def _lines(event: CanonicalEvent) -> list[tuple[str, OrderLine | ShipmentLine]]:
    source: list[OrderLine | ShipmentLine] = []
    if event.order is not None:
        source.extend(event.order.lines)
    elif event.shipment is not None:
        source.extend(event.shipment.lines)
    return [(line_key(line, i), line) for i, line in enumerate(source)]
