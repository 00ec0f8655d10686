"""ERP adapters: one small Protocol, one module each, plug-ins by entry point.

An adapter applies one event to the ERP. It is called only for events the
route's guards let through (not a duplicate, not stale, not a pure echo), with
``Application.lines`` naming the lines to apply when not all of them should
(see ``services.consumers.guards``). It raises ``RetryableError`` for
transient trouble (retried later through the route's delay queues) and
``PermanentError`` for input the ERP will never accept (dead-lettered).

An adapter may also define ``async def start()``; the route awaits it before
consuming (create tables, open pools, fail fast on bad settings), and
``async def apply_many(items) -> list[exception | None]`` to apply a round of
events (different documents) at once, e.g. one fsync for many files.

Third-party adapters register a factory in the ``orderbridge.adapters``
entry-point group; ``[routes.adapter] type = "<entry point name>"`` selects it
and every other key of that table is passed to the factory as keyword
options (see the README for an example).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from shared.errors import ConfigurationError
from shared.schema.codec import encode_event
from shared.schema.models import CanonicalEvent
from shared.state.port import AppliedDocument, Lookup

ENTRY_POINT_GROUP = "orderbridge.adapters"


@dataclass(frozen=True)
class Application:
    """One event to apply: the event, its bytes as published, and the lines to apply."""

    route: str
    event: CanonicalEvent
    body: bytes
    lines: tuple[str, ...] | None = None
    """Keys of the lines to apply (line id, else position); None = every line."""

    @cached_property
    def effective_event(self) -> CanonicalEvent:
        """The event with only the lines to apply (never a stale line)."""
        if self.lines is None or self.event.order is None:
            return self.event
        from services.consumers.guards import line_key

        wanted = set(self.lines)
        kept = [
            line for i, line in enumerate(self.event.order.lines) if line_key(line, i) in wanted
        ]
        order = self.event.order.model_copy(update={"lines": kept, "lines_complete": False})
        return self.event.model_copy(update={"order": order})

    @cached_property
    def effective_body(self) -> bytes:
        """The JSON to hand to the ERP: as published, or re-encoded without stale lines."""
        return self.body if self.lines is None else encode_event(self.effective_event)


class ErpAdapter(Protocol):
    async def apply(self, item: Application) -> None:
        """Make the ERP effect; raise RetryableError or PermanentError when it fails."""

    async def close(self) -> None: ...


@runtime_checkable
class BatchAdapter(Protocol):
    async def apply_many(self, items: list[Application]) -> list[BaseException | None]:
        """Apply every item; the result per item is None (applied) or its failure."""


@runtime_checkable
class TransactionalAdapter(Protocol):
    """An adapter that records the idempotency ledger in the same transaction as its effect."""

    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]: ...

    async def apply_recorded(
        self,
        item: Application,
        keys: Sequence[str],
        document: str,
        version: int | None,
        stamps: Mapping[str, datetime],
    ) -> bool:
        """Apply and record atomically; False (nothing applied) when a key was recorded."""

    async def apply(self, item: Application) -> None: ...

    async def close(self) -> None: ...


AdapterFactory = Callable[..., ErpAdapter]


def _builtin(name: str) -> AdapterFactory | None:
    if name == "file":
        from services.consumers.adapters.file import FileAdapter

        return FileAdapter
    if name == "http":
        from services.consumers.adapters.http import HttpAdapter

        return HttpAdapter
    if name == "postgres":
        from services.consumers.adapters.postgres import PostgresAdapter

        return PostgresAdapter
    return None


def create_adapter(kind: str, options: Mapping[str, Any]) -> ErpAdapter:
    """The adapter ``kind`` (built-in or plug-in) built with the route's options."""
    factory = _builtin(kind)
    if factory is None:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
        if not found:
            available = sorted(
                {"file", "http", "postgres"}
                | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
            )
            raise ConfigurationError(
                f"unknown adapter type {kind!r}; available: {', '.join(available)}"
            )
        factory = found[0].load()
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigurationError(f"adapter {kind!r}: {exc}") from None
