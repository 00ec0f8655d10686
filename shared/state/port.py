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
* processed — per consumer route, the idempotency keys already applied;
* documents — per consumer route and document, the highest whole-document
  version and the newest ``last_updated_at`` per line that was applied.

``record_applied`` writes processed keys and document state in one
transaction, insert-if-absent: a concurrent duplicate sees ``False`` instead of
a check-then-insert race.

Every backend translates its driver's failures into ``StateUnavailable``
(retryable) at its edge, and refuses malformed input (no keys, naive line
stamps, a non-positive lease TTL) with ``ValueError`` before touching storage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol


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
    """What a route already applied of one document (for the stale-version guard)."""

    version: int | None = None
    lines: Mapping[str, datetime] = field(default_factory=dict)
    """Line key (line id, else position) → newest ``last_updated_at`` applied (UTC)."""


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
    """One event's question to the ledger: its keys, and the document it belongs to."""

    keys: Sequence[str]
    document: str


class ProcessedStore(Protocol):
    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        """For each lookup: whether a key was recorded, and what was applied of the
        document (None when processed or unknown). One round trip for many events:
        the consumer asks once per round instead of twice per event."""

    async def is_processed(self, route: str, keys: Sequence[str]) -> bool:
        """True when any of ``keys`` (idempotency key, message id) was recorded for ``route``."""

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        """What ``route`` applied of ``document`` (``<source>:<kind>:<document_id>``)."""

    async def record_applied(
        self,
        route: str,
        keys: Sequence[str],
        document: str,
        version: int | None,
        lines: Mapping[str, datetime],
    ) -> bool:
        """Record an applied event atomically; False when a key was already recorded.

        All or nothing: on False no key, version or line stamp was written. The
        document's version only ever rises and each line stamp only moves
        forward (an older value never overwrites a newer one). ``keys`` must not
        be empty; line stamps must be timezone-aware (they come back in UTC).
        """


class StateStore(CursorStore, TokenStore, LeaseStore, ProcessedStore, Protocol):
    """Everything above, over one connection pool."""

    def not_ready_reason(self) -> str | None:
        """None while the store answers, else why not (the last failure, for /readyz)."""

    async def close(self) -> None: ...


def check_applied(keys: Sequence[str], lines: Mapping[str, datetime]) -> dict[str, datetime]:
    """Validate ``record_applied`` input the same way in every backend.

    Returns the line stamps in UTC, so backends compare and store one form.
    """
    if isinstance(keys, str) or not keys:
        raise ValueError("record_applied needs a non-empty sequence of keys")
    utc: dict[str, datetime] = {}
    for line, stamp in lines.items():
        if stamp.tzinfo is None or stamp.utcoffset() is None:
            raise ValueError(f"line {line!r}: stamp {stamp.isoformat()} has no timezone")
        utc[line] = stamp.astimezone(UTC)
    return utc


def check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"lease TTL must be positive, got {ttl_seconds!r}")
