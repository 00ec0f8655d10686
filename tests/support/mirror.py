"""The ERP as an import job would build it from a file inbox, compared with the platform.

``fold`` replays the applied files in application order (their names start with
the applied-at stamp) the way an ERP import job does: the header of a file
counts when it applies (``applied`` null or ``applied.header`` true), each line
of a file replaces that line. ``differences`` then compares that mirror with a
document as the platform holds it now, in every normalized field. Equality is
by value, not by notation: ``26.10`` equals ``26.1``, a zone-less stamp equals
the same wall time in UTC; channel flags (``changed``, ``echo``) and message
meta are not document state. Apicbase's copies of one order differ below the
second (webhook microseconds, API milliseconds), so its instants compare to the
second.

``applied_twice`` finds a change the inbox received twice: the same header or
line state of one document in two files. This module is deliberately
independent of ``shared.applied``: it checks it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from shared.schema.models import CanonicalEvent, OrderLine, ShipmentLine

_HEADER_FIELDS = ("document_number", "version", "process_status", "logistics_status")
_LINE_CHANNEL_FIELDS = frozenset({"changed", "echo"})


@dataclass
class Mirror:
    header: dict[str, Any] | None = None
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: int = 0


def document(event: CanonicalEvent) -> str:
    return f"{event.source}:{event.kind}:{event.document_id}"


def fold(events: Iterable[CanonicalEvent]) -> dict[str, Mirror]:
    """Each document's ERP state after applying ``events`` in order."""
    mirrors: dict[str, Mirror] = {}
    for event in events:
        mirror = mirrors.setdefault(document(event), Mirror())
        mirror.files += 1
        if event.applied is None or event.applied.header:
            mirror.header = header_of(event)
        mirror.lines.update(lines_of(event))
    return mirrors


def header_of(event: CanonicalEvent) -> dict[str, Any]:
    seconds = event.source == "apicbase"
    fields: dict[str, Any] = {
        name: _plain(getattr(event, name), seconds) for name in _HEADER_FIELDS
    }
    fields["last_updated_at"] = _plain(event.last_updated_at, seconds)
    if event.order is not None:
        header = {
            k: v for k, v in event.order.__dict__.items() if k not in ("lines", "lines_complete")
        }
        fields["order"] = _plain(header, seconds)
    if event.shipment is not None:
        header = {k: v for k, v in event.shipment.__dict__.items() if k != "lines"}
        fields["shipment"] = _plain(header, seconds)
    return fields


def lines_of(event: CanonicalEvent) -> dict[str, dict[str, Any]]:
    """Lines by key; for an order-documents event, its attached documents by object id."""
    seconds = event.source == "apicbase"
    if event.kind == "order_documents" and event.order is not None:
        return {
            str(doc["object_id"] or doc["url"] or doc["name"]): _plain(doc, seconds)
            for doc in event.order.documents
        }
    source: list[OrderLine | ShipmentLine] = []
    if event.order is not None:
        source.extend(event.order.lines)
    if event.shipment is not None:
        source.extend(event.shipment.lines)
    return {
        _line_key(line, i): {
            k: _plain(v, seconds) for k, v in line.__dict__.items() if k not in _LINE_CHANNEL_FIELDS
        }
        for i, line in enumerate(source)
    }


def differences(mirror: Mirror | None, truth: CanonicalEvent) -> list[str]:
    """What the ERP's state of ``truth``'s document lacks or has otherwise."""
    if mirror is None:
        return ["never applied"]
    found = []
    expected_header = header_of(truth)
    if mirror.header is None:
        found.append("no header applied")
    else:
        for key, value in expected_header.items():
            if mirror.header.get(key) != value:
                found.append(f"header {key}: ERP {mirror.header.get(key)!r} != {value!r}")
    expected_lines = lines_of(truth)
    for key, value in expected_lines.items():
        got = mirror.lines.get(key)
        if got != value:
            changed = sorted(k for k in value if got is None or got.get(k) != value[k])
            found.append(f"line {key}: {'missing' if got is None else changed}")
    extra = sorted(set(mirror.lines) - set(expected_lines))
    if extra:
        found.append(f"lines the platform does not have: {extra}")
    return found


def applied_twice(events: Iterable[CanonicalEvent]) -> list[tuple[str, str, int]]:
    """(document, part, times) for every header or line state received more than once."""
    seen: Counter[tuple[str, str, str]] = Counter()
    for event in events:
        doc = document(event)
        if event.applied is None or event.applied.header:
            seen[(doc, "header", repr(sorted(header_of(event).items())))] += 1
        for key, line in lines_of(event).items():
            seen[(doc, key, repr(sorted(line.items())))] += 1
    return [(doc, part, n) for (doc, part, _), n in seen.items() if n > 1]


def _line_key(line: OrderLine | ShipmentLine, index: int) -> str:
    if isinstance(line, OrderLine):
        return line.line_id or line.position or f"#{index}"
    return "/".join(
        str(part or "-")
        for part in (
            line.purchase_order_number,
            line.purchase_order_line_position,
            line.delivery_schedule_position,
            line.despatch_advice_line_position,
        )
    )


def _plain(value: Any, seconds: bool) -> Any:
    """Values compared by meaning: decimals by value, timestamps as UTC instants."""
    if isinstance(value, Mapping):
        if set(value) == {"text", "kind", "utc"}:
            return _instant(value, seconds)
        return {k: _plain(v, seconds) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, seconds) for v in value]
    if isinstance(value, Decimal):
        return "0" if value == 0 else format(value.normalize(), "f")
    if isinstance(value, BaseModel):
        return _plain(value.__dict__, seconds)
    return value


def _instant(stamp: Mapping[str, Any], seconds: bool) -> str:
    utc = stamp["utc"]
    if utc is None and stamp["kind"] == "local":
        utc = datetime.fromisoformat(stamp["text"].strip()).replace(tzinfo=UTC)
    if utc is None:
        return f"{stamp['kind']}:{stamp['text']}"
    moment: datetime = utc.astimezone(UTC)
    return moment.replace(microsecond=0).isoformat() if seconds else moment.isoformat()
