"""What the ERP already has of a document, and what an event adds to it (pure).

The platforms promise less than one key per change (api-facts §1, §2, §5, §7;
STYLE §7): a change may leave the order version alone (order documents, a
portal resend), re-stamp no line (a reassigned contact, a shipment approval),
reach us twice by different channels (webhook and poll; an Apicbase order by
webhook and by API with other number and time formatting), or arrive late
(webhooks overtaking each other, retries). So whether an event is "already
applied" is not a question about one key but about document state, asked
**per part** of the document: its header, and each of its lines.

For every part it applied, a route records a ``PartState``:

* ``version`` — the document version of the event that carried the part;
* ``stamp`` — the part's own ``lastUpdatedAt`` (the document's for the header,
  the line's for a line) as a UTC instant; a zone-less stamp (the form of
  Tradecloud's own examples) is read as UTC, never ignored;
* ``digest`` — a hash of the part's normalized content: exact decimals
  compared by value (``26.1`` equals ``26.10``), instants compared in UTC at
  the source's precision, channel-dependent flags (``changed``, ``echo``)
  left out. The header's digest also covers the document's version and own
  stamp: a newer version of a document is news even when it changes only
  fields normalization keeps in ``raw``.

An incoming part is then, compared with what was recorded for it:

* ``older`` — its version (or, without versions, its stamp) is behind: never
  applied, so older state never overwrites newer;
* ``known`` — same digest: the ERP has it (a redelivery, the poll of a state a
  webhook brought, a replay, a resend of unchanged lines);
* ``news`` — anything else: applied.

Parts recorded by an earlier release carry no digest: they are ``known``
unless the incoming part is strictly newer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel

from shared.schema.models import CanonicalEvent, DocumentRef, OrderLine, ShipmentLine, Timestamp

HEADER: Final = "@header"
"""The part key of a document's header (everything but its lines)."""

Verdict = Literal["older", "known", "news"]
Precision = Literal["milliseconds", "seconds"]

_DIGEST_BYTES: Final = 16
_LINE_CHANNEL_FIELDS: Final = frozenset({"changed", "echo"})
_EVENT_HEADER_FIELDS: Final = (
    "document_number",
    "version",
    "process_status",
    "logistics_status",
    "last_updated_at",
)


@dataclass(frozen=True, slots=True)
class PartState:
    """One part of a document as of one event: version, own stamp, content digest."""

    version: int | None
    stamp: datetime | None
    """UTC; None when the part carries no (parsable) stamp."""
    digest: str | None
    """None only for parts recorded before digests existed."""


def document_key(event: CanonicalEvent) -> str:
    """``<source>:<kind>:<document_id>``: whose state a route records."""
    return f"{event.source}:{event.kind}:{event.document_id}"


def delivery_key(event: CanonicalEvent) -> str | None:
    """The webhook message a pushed event came in, for recognising its retries.

    Only a pushed body names its message: a polled or fetched document carries
    the ``meta`` of the *last* message about it, which says nothing about the
    state it shows (api-facts §7.5), so it has no delivery key.
    """
    if event.channel != "webhook" or not event.message_id or not event.event_name:
        return None
    return f"{event.source}:{event.kind}:{event.message_id}"


def line_key(line: OrderLine | ShipmentLine, index: int) -> str:
    """A line's identity within its document: Tradecloud line id, else its position."""
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


def document_ref_key(document: DocumentRef, index: int) -> str:
    """An attached document's identity: who attached it, where, and its object id or URL."""
    name = document["object_id"] or document["url"] or document["name"] or f"#{index}"
    return f"doc:{document['owner'] or '-'}:{document['line_position'] or '-'}:{name}"


Item = OrderLine | ShipmentLine | DocumentRef
"""What a document has besides its header: lines; the documents of an order-documents event."""


def event_items(event: CanonicalEvent) -> list[tuple[str, Item]]:
    """The event's items (lines; attached documents for ``order_documents``) with their keys.

    An order-documents event is a delta of attachments (each event names the
    documents just attached), so each document is an item of its own: events
    overtaking each other each bring theirs. Keys repeated within one event (a
    shipment splitting one PO line over load carriers without despatch line
    positions) get ``#2``, ``#3``… so no item hides another.
    """
    found: list[tuple[str, Item]] = []
    if event.kind == "order_documents" and event.order is not None:
        found.extend((document_ref_key(doc, i), doc) for i, doc in enumerate(event.order.documents))
    elif event.order is not None:
        found.extend((line_key(line, i), line) for i, line in enumerate(event.order.lines))
    elif event.shipment is not None:
        found.extend((line_key(line, i), line) for i, line in enumerate(event.shipment.lines))
    seen: dict[str, int] = {}
    keyed: list[tuple[str, Item]] = []
    for key, item in found:
        seen[key] = seen.get(key, 0) + 1
        keyed.append((key if seen[key] == 1 else f"{key}#{seen[key]}", item))
    return keyed


# ------------------------------------------------------------------ comparisons


def instant(stamp: Timestamp | None) -> datetime | None:
    """A stamp as a comparable UTC instant; a zone-less date-time is read as UTC.

    Tradecloud's documents show ``lastUpdatedAt`` both with a zone and without one
    (``2019-12-31T10:11:12``, the docs' own example) while its poll cursors are
    UTC: reading the zone-less form as UTC keeps both comparable. Plain dates and
    unparsable text give None (the comparison then falls back to versions).
    """
    if stamp is None:
        return None
    return _moment(stamp["text"], stamp["kind"], stamp["utc"])


def _moment(text: str, kind: str, utc: datetime | None) -> datetime | None:
    if utc is not None:
        return utc
    if kind != "local":
        return None
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC)
    except ValueError:
        return None


def rank(incoming: PartState, applied: PartState) -> int:
    """-1 when ``incoming`` is older than ``applied``, 1 when newer, 0 when neither shows.

    The version decides when both have one (one counter per order, api-facts
    §7.4); otherwise the stamps decide.
    """
    old, new = applied.version, incoming.version
    if old is not None and new is not None and old != new:
        return 1 if new > old else -1
    before, after = applied.stamp, incoming.stamp
    if before is not None and after is not None and before != after:
        return 1 if after > before else -1
    return 0


def verdict(incoming: PartState, applied: PartState | None) -> Verdict:
    """Whether ``incoming`` is older than, the same as, or news to what was applied."""
    if applied is None:
        return "news"
    order = rank(incoming, applied)
    if order < 0:
        return "older"
    if applied.digest is None:  # recorded by release 1: content unknown, compare moments
        return "known" if order == 0 and same_moment(incoming, applied) else "news"
    return "known" if incoming.digest == applied.digest else "news"


def same_moment(incoming: PartState, applied: PartState) -> bool:
    """Both are provably as of one moment: one version, or (without versions) one stamp."""
    if incoming.version is not None and applied.version is not None:
        return incoming.version == applied.version
    return incoming.stamp is not None and incoming.stamp == applied.stamp


def worth_recording(incoming: PartState, applied: PartState | None) -> bool:
    """News, or known content seen as of a newer version or stamp (moves the mark on)."""
    found = verdict(incoming, applied)
    if found == "news":
        return True
    return found == "known" and applied is not None and rank(incoming, applied) > 0


# ------------------------------------------------------------------ parts of an event


@dataclass(frozen=True, slots=True)
class EventParts:
    """An event's header and lines as ``PartState``s, lines keyed and in order."""

    header: PartState
    lines: tuple[tuple[str, PartState], ...]
    """Every item: the lines, or the documents of an order-documents event."""


def parts_of(event: CanonicalEvent) -> EventParts:
    """The event's parts, each with the version, stamp and digest it would record.

    A line without a stamp of its own (an Apicbase package) in a whole document
    takes the document's: an older copy of the document is older line by line too.
    """
    precision: Precision = "seconds" if event.source == "apicbase" else "milliseconds"
    header_stamp = _cut(instant(event.last_updated_at), precision)
    header = PartState(event.version, header_stamp, _digest(_header(event), precision))
    whole = event.shipment is not None or (event.order is not None and event.order.lines_complete)
    items: list[tuple[str, PartState]] = []
    for key, item in event_items(event):
        if isinstance(item, OrderLine | ShipmentLine):
            stamp = _cut(instant(item.last_updated_at), precision)
            content: Any = _without(item.__dict__, _LINE_CHANNEL_FIELDS)
        else:
            stamp, content = None, item
        if stamp is None and whole:
            stamp = header_stamp
        items.append((key, PartState(event.version, stamp, _digest(content, precision))))
    return EventParts(header, tuple(items))


def _cut(moment: datetime | None, precision: Precision) -> datetime | None:
    """``moment`` at the source's precision: Tradecloud writes milliseconds; Apicbase's
    copies of one order differ below the second (webhook µs, API ms or none)."""
    if moment is None:
        return None
    if precision == "seconds":
        return moment.replace(microsecond=0)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def change_key(document: str, parts: Mapping[str, PartState]) -> str:
    """One application's identity: the document and the content of the parts it applies.

    The same change reaching a route twice (a redelivery after a crash between
    the ERP's effect and the ledger's record, the same state by webhook and by
    poll) has the same change key, whatever the event that carried it.
    """
    text = "\x1f".join(
        [document, *(f"{part}={parts[part].digest}" for part in sorted(parts))]
    ).encode()
    return hashlib.blake2b(text, digest_size=_DIGEST_BYTES).hexdigest()


def state_digest(event: CanonicalEvent) -> str:
    """One digest of the document's whole state as this event shows it (header and lines)."""
    parts = parts_of(event)
    return change_key(document_key(event), {HEADER: parts.header, **dict(parts.lines)})


def _header(event: CanonicalEvent) -> dict[str, Any]:
    content: dict[str, Any] = {name: getattr(event, name) for name in _EVENT_HEADER_FIELDS}
    if event.order is not None:
        # An order-documents event's documents are items of their own (``event_items``).
        dropped = {"lines", "lines_complete"}
        if event.kind == "order_documents":
            dropped.add("documents")
        content["order"] = _without(event.order.__dict__, dropped)
    if event.shipment is not None:
        content["shipment"] = _without(event.shipment.__dict__, {"lines"})
    return content


def _without(fields: Mapping[str, Any], dropped: frozenset[str] | set[str]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if key not in dropped}


# ------------------------------------------------------------------ digests


def _digest(content: Any, precision: Precision) -> str:
    """A hash of ``content`` in which equal states are equal bytes.

    Decimals count by value (``26.10`` is ``26.1``), timestamps as UTC instants
    cut to ``precision`` (a copy written with microseconds and an offset equals
    one written with milliseconds and ``Z``; a zone-less one reads as UTC),
    models by their fields. orjson writes the content (sorted keys) and a
    regular expression then turns each timestamp object into its instant: every
    consumed event pays this, so no Python walk over the document.
    """
    written = orjson.dumps(content, default=_DEFAULTS[precision], option=_OPTIONS)
    canonical = _TIMESTAMP.sub(_STAMPS[precision], written)
    return hashlib.blake2b(canonical, digest_size=_DIGEST_BYTES).hexdigest()


_OPTIONS: Final = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
_TIMESTAMP: Final = re.compile(
    rb'\{"kind":"(instant|local|date|unparsed)","text":"((?:[^"\\]|\\.)*)","utc":(null|"[^"]*")\}'
)
"""A ``Timestamp`` as orjson writes it with sorted keys (its ``utc`` already cut)."""


def _defaults(precision: Precision) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return _decimal_text(value)
        if isinstance(value, datetime):
            return _instant_text(value, precision)
        if isinstance(value, BaseModel):
            return value.__dict__
        raise TypeError(f"{type(value).__name__} is not content")

    return default


def _stamps(precision: Precision) -> Callable[[re.Match[bytes]], bytes]:
    def replace(match: re.Match[bytes]) -> bytes:
        kind, text, utc = match.group(1), match.group(2), match.group(3)
        if utc != b"null":
            return utc
        if kind == b"local":
            moment = _moment(text.decode(), "local", None)
            if moment is not None:
                return b'"' + _instant_text(moment, precision).encode() + b'"'
        return b'"' + kind + b":" + text + b'"'

    return replace


_DEFAULTS: Final = {p: _defaults(p) for p in ("milliseconds", "seconds")}
_STAMPS: Final = {p: _stamps(p) for p in ("milliseconds", "seconds")}


@lru_cache(maxsize=4096)
def _instant_text(moment: datetime, precision: Precision) -> str:
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    if precision == "seconds":
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        return str(value)
    if value == 0:
        return "0"
    return format(value.normalize(), "f")
