"""ERP adapters: one small Protocol, one module each, plug-ins by entry point.

An adapter applies one event to the ERP. It is called only with what the
route's policy found news (``services.consumers.policy``): the header when
``Application.header`` is true, and the lines ``Application.lines`` names
(``effective_event`` / ``effective_body`` hold exactly that, with the event's
``applied`` field saying so). ``Application.change`` identifies the change
itself: the same change reaching the adapter twice (a crash between its
effect and the route's record) has the same change key. It raises ``RetryableError`` for
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
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from services.consumers.validate import AdapterKeys
from shared.applied import event_items
from shared.errors import ConfigurationError
from shared.schema.codec import encode_event
from shared.schema.models import AppliedParts, CanonicalEvent
from shared.state.port import AppliedDocument, Lookup, Record

ENTRY_POINT_GROUP = "orderbridge.adapters"


@dataclass(frozen=True)
class Application:
    """One event to apply: the event, its bytes as published, and what of it applies."""

    route: str
    event: CanonicalEvent
    body: bytes
    header: bool = True
    """Whether the header applies (it is news to the ERP)."""
    lines: tuple[str, ...] | None = None
    """Keys of the items to apply (``shared.applied.event_items``: lines, or the documents
    of an order-documents event); None = every one."""
    change: str = ""
    """The change's identity (``shared.applied.change_key``); the event id when empty."""

    @property
    def whole(self) -> bool:
        """True when the event applies as published: its header and every line."""
        return self.header and self.lines is None

    @property
    def change_key(self) -> str:
        return self.change or self.event.event_id

    @cached_property
    def effective_event(self) -> CanonicalEvent:
        """The event with only the items to apply, and ``applied`` saying what applies."""
        if self.whole:
            return self.event
        wanted = set(self.lines) if self.lines is not None else None
        keyed = event_items(self.event)
        kept = [key for key, _ in keyed if wanted is None or key in wanted]
        items = [item for key, item in keyed if wanted is None or key in wanted]
        update: dict[str, object] = {
            "applied": AppliedParts(header=self.header, lines=kept),
        }
        if self.event.kind == "order_documents" and self.event.order is not None:
            update["order"] = self.event.order.model_copy(update={"documents": items})
        elif self.event.order is not None:
            update["order"] = self.event.order.model_copy(
                update={"lines": items, "lines_complete": False}
            )
        elif self.event.shipment is not None:
            update["shipment"] = self.event.shipment.model_copy(update={"lines": items})
        return self.event.model_copy(update=update)

    @cached_property
    def effective_body(self) -> bytes:
        """The JSON to hand to the ERP: as published, or re-encoded with what applies."""
        return self.body if self.whole else encode_event(self.effective_event)


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

    async def apply_recorded(self, item: Application, record: Record) -> bool:
        """Apply and record atomically; False (nothing applied) when the ledger, decided
        again under the document's lock, finds nothing new anymore."""

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


def plugin_adapters() -> dict[str, AdapterKeys]:
    """Installed plug-in adapters by name, with the keys their factories take."""
    found: dict[str, AdapterKeys] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in ("file", "http", "postgres"):
            continue
        try:
            found[entry.name] = AdapterKeys.of(entry.load())
        except Exception:  # a broken plug-in is reported when the route creates it
            found[entry.name] = AdapterKeys(any_key=True)
    return found


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
