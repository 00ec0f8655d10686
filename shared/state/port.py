"""The state store port: the little durable state orderbridge keeps.

One Protocol, three implementations that pass the same contract tests:
``memory`` (tests, single process), ``sqlite`` (embedded default, WAL, one file,
several processes on one host) and ``postgres`` (several replicas on several
hosts). ``ORDERBRIDGE_STATE_URL`` picks one: ``sqlite:///path/to/file.db``
(default ``sqlite:///./orderbridge-state.db``), ``postgresql://…`` or ``memory://``.

What it holds (see DESIGN.md):

* cursors   — per poll stream, the server's ``lastUpdatedAt`` text, verbatim;
* tokens    — per platform, the access/refresh pair (a rotated refresh token
  must survive restarts);
* leases    — per stream, which instance may poll it (one active replica);
* deliveries — per consumer route, the webhook messages applied (their
  retries are recognised by the message id; a delivery never stands for a
  document state);
* applied parts — per consumer route and document, what the ERP has of each
  part (header, lines): as of which version and stamp, and a digest of its
  content (``shared.applied``).

``record_applied`` writes a delivery and the parts in one transaction and
decides again, under the document's lock, from what is recorded then: a
concurrent copy of the same change sees ``False`` instead of a
check-then-insert race.

Every backend translates its driver's failures into ``StateUnavailable``
(retryable) at its edge, and refuses malformed input (no keys, naive line
stamps, a non-positive lease TTL) with ``ValueError`` before touching storage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from shared.applied import PartState, verdict, worth_recording


@dataclass(frozen=True)
class Tokens:
    """An OAuth/JWT token pair as issued by an upstream platform."""

    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None

    def __repr__(self) -> str:  # never print secrets
        return f"Tokens(expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class AppliedDocument:
    """What a route already applied of one document, part by part."""

    parts: Mapping[str, PartState] = field(default_factory=dict)
    """Part key (``shared.applied.HEADER`` or a line key) → its recorded state."""


class CursorStore(Protocol):
    async def get_cursor(self, stream: str) -> str | None:
        """The stored cursor text, verbatim; None before the first commit."""

    async def set_cursor(self, stream: str, value: str) -> None:
        """Store the cursor text verbatim (only after the page's events were confirmed)."""


class TokenStore(Protocol):
    async def load_tokens(self, platform: str) -> Tokens | None: ...

    async def save_tokens(self, platform: str, tokens: Tokens) -> None: ...


class LeaseStore(Protocol):
    async def try_acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take or renew the lease; False while another holder's lease is unexpired.

        On True the lease runs until ``ttl_seconds`` after the store's clock at
        the call (the database clock for PostgreSQL, so hosts need not agree):
        a caller that starts its own timer *before* the call never believes in
        the lease longer than the store does (``shared.state.lease``).
        """

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up (only if ``holder`` has it)."""

    async def lease_holder(self, name: str) -> str | None:
        """The current unexpired holder, if any."""


@dataclass(frozen=True)
class Lookup:
    """One event's question to the ledger: its webhook delivery (if pushed), its document."""

    delivery: str | None
    document: str


@dataclass(frozen=True)
class Record:
    """What to record once an event was applied: its delivery and the parts it set."""

    delivery: str | None
    document: str
    parts: Mapping[str, PartState]


class ProcessedStore(Protocol):
    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        """For each lookup: whether its delivery was recorded, and what was applied of
        the document (None when delivered or unknown). One round trip for many
        events: the consumer asks once per round instead of once per event."""

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        """What ``route`` applied of ``document`` (``<source>:<kind>:<document_id>``)."""

    async def record_applied(self, route: str, record: Record) -> bool:
        """Record an applied event atomically; False when it brought nothing new anymore.

        Under the document's lock it decides again from what is recorded then:
        False (nothing written) when the delivery was recorded or no part is
        news (``shared.applied.verdict``); otherwise it records the delivery and
        every part worth recording (``worth_recording``): a part's state never
        moves back. ``parts`` must not be empty; stamps must be timezone-aware
        (they come back in UTC).
        """

    async def record_applied_many(self, route: str, records: Sequence[Record]) -> list[bool]:
        """``record_applied`` for each record in turn, each atomic on its own, in one call
        (SQLite: one transaction and one fsync for the round). Raises when the store
        cannot be reached: then nothing of the call is known to be recorded."""


class StateStore(CursorStore, TokenStore, LeaseStore, ProcessedStore, Protocol):
    """Everything above, over one connection pool."""

    def not_ready_reason(self) -> str | None:
        """None while the store answers, else why not (the last failure, for /readyz)."""

    async def close(self) -> None: ...


def check_record(record: Record) -> dict[str, PartState]:
    """Validate ``record_applied`` input the same way in every backend.

    Returns the parts with their stamps in UTC, so backends compare and store one form.
    """
    if not record.parts:
        raise ValueError("record_applied needs at least one part")
    utc: dict[str, PartState] = {}
    for part, state in record.parts.items():
        stamp = state.stamp
        if stamp is not None:
            if stamp.tzinfo is None or stamp.utcoffset() is None:
                raise ValueError(f"part {part!r}: stamp {stamp.isoformat()} has no timezone")
            stamp = stamp.astimezone(UTC)
        utc[part] = PartState(state.version, stamp, state.digest)
    return utc


def still_news(
    parts: Mapping[str, PartState], recorded: Mapping[str, PartState]
) -> dict[str, PartState] | None:
    """The parts to write, decided again against what is recorded now; None: nothing new."""
    if not any(verdict(state, recorded.get(part)) == "news" for part, state in parts.items()):
        return None
    return {
        part: state for part, state in parts.items() if worth_recording(state, recorded.get(part))
    }


def check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"lease TTL must be positive, got {ttl_seconds!r}")
