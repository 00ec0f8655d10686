"""What ``orderbridge replay`` reads from the archive and sends to a route (pure).

Two questions, answered without I/O and tested by tables:

1. **Where to start and stop.** ``--from`` and ``--until`` take a stream
   offset (``12345``), ``first``, a time (ISO 8601; without a zone it is UTC)
   or an age (``90s``, ``30m``, ``2h``, ``7d``, ``1h30m``: that long before
   now). ``parse_position`` turns each into what the stream's
   ``x-stream-offset`` consumer argument takes: an offset, ``"first"`` or a
   timestamp. Ages become timestamps on the operator's clock, once, so
   ``--from 2h --until 1h`` names one fixed window.
2. **Which events go to the route.** Exactly those the route would have
   taken from ``orderbridge.events``: the routing key matches one of the
   route's bindings (topic semantics, ``topic_matches``) and the event meets
   the route's filter (``policy.passes_filter``, the consumer's own code);
   ``--routing-key`` narrows that further, never widens it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final, Literal

from services.consumers.config import Route
from services.consumers.policy import passes_filter
from shared.schema.models import CanonicalEvent

Position = int | datetime | Literal["first"]
"""A stream position as ``x-stream-offset`` takes it."""

Verdict = Literal["match", "unbound", "outside_pattern", "filtered"]
"""``match``, or why an archived event is not sent: the route is not bound to its
routing key, ``--routing-key`` leaves it out, or the route's filter refuses it."""

_AGE_PART = re.compile(r"(\d+)([smhdw])")
_AGE: Final = re.compile(r"^(?:\d+[smhdw])+$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN_WORD = re.compile(r"^([A-Za-z0-9_-]+|\*|#)$")

FORMS: Final = (
    "an offset (12345), 'first', a time (2026-12-04T10:00:00Z) or an age (90s, 30m, 2h, 7d, 1h30m)"
)


def parse_position(text: str, *, now: datetime) -> Position:
    """``--from``/``--until`` as a stream position; ``ValueError`` names the accepted forms."""
    value = text.strip()
    if value.lower() in ("first", "start"):
        return "first"
    if value.isdigit():
        return int(value)
    if _AGE.match(value.lower()):
        seconds = sum(
            int(amount) * _UNITS[unit] for amount, unit in _AGE_PART.findall(value.lower())
        )
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a stream position: use {FORMS}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_window(start: Position, until: Position | None) -> None:
    """Refuse ``--until first`` and a window that ends before it starts."""
    if until is None:
        return
    if until == "first":
        raise ValueError("--until takes an offset, a time or an age, not 'first'")
    if isinstance(start, int) and isinstance(until, int) and until < start:
        raise ValueError(f"--until {until} is before --from {start}")
    if isinstance(start, datetime) and isinstance(until, datetime) and until < start:
        raise ValueError(f"--until {until.isoformat()} is before --from {start.isoformat()}")


def check_pattern(pattern: str) -> str:
    """A topic pattern (words, ``*``, ``#`` separated by dots), or ``ValueError``."""
    if not all(_PATTERN_WORD.match(word) for word in pattern.split(".")):
        raise ValueError(f"{pattern!r} is not a routing-key pattern (words, '*' or '#')")
    return pattern


def topic_matches(pattern: str, routing_key: str) -> bool:
    """RabbitMQ topic matching: ``*`` is exactly one word, ``#`` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


def by_routing_key(routing_key: str, route: Route, pattern: str | None) -> Verdict:
    """The part of ``select`` that needs no body: bindings, then ``--routing-key``."""
    if not any(topic_matches(binding, routing_key) for binding in route.bindings):
        return "unbound"
    if pattern is not None and not topic_matches(pattern, routing_key):
        return "outside_pattern"
    return "match"


def select(event: CanonicalEvent, routing_key: str, route: Route, pattern: str | None) -> Verdict:
    """Whether the archived ``event`` (published under ``routing_key``) goes to ``route``."""
    verdict = by_routing_key(routing_key, route, pattern)
    if verdict != "match":
        return verdict
    return "match" if passes_filter(event, route) else "filtered"
