"""Drain one poll stream: page under one cursor, publish with confirms, then commit.

The rules (api-facts §2.3, §2.4, §7.2) and how they are kept:

* Page with ``offset`` under the **same** cursor while the backlog lasts (the
  page does not reach ``total``; an answer without ``total`` lasts until a
  page comes back short); only once it is drained move the cursor, to the
  answer's ``lastUpdatedAt`` string, verbatim (the client falls back to the
  last item's). Same-millisecond siblings across a page boundary are
  therefore never skipped.
* **Publish, then commit**: ``commit`` runs only after every event of every
  page was confirmed. A crash anywhere re-publishes at worst (idempotency keys
  absorb it), never leaves a gap.
* **Offset shift.** The server sorts by ``lastUpdatedAt``: an order updated
  while we page (or one that leaves a status filter) moves out of the part
  already read, and everything after it slides one place back, so plain
  offset paging would skip a document. Each next page overlaps the previous
  one by one document; if that document is not where we left it, the backlog
  shifted and paging starts again at offset 0 under the same cursor, skipping
  documents already published in this drain (same id, same stamp).
* Fetching the next page and normalizing overlap with publishing: a few pages'
  confirms may be pending at once (``pages_in_flight``); the commit waits for
  all of them.
* A document the normalizer refuses is put in quarantine (a queue, with the
  reason) before the cursor passes it: never silently dropped, never blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.clients.tradecloud import PollPage
from shared.errors import InvalidPayload
from shared.logging import get_logger
from shared.normalize.fields import parse_timestamp
from shared.schema.models import CanonicalEvent

log = get_logger(__name__)

Fetch = Callable[[str, int], Awaitable[PollPage]]
"""(cursor, offset) → one page polled with ``lastUpdatedAfter=cursor``."""
Normalize = Callable[[Any, str], CanonicalEvent]
"""(document, cursor) → the canonical event; lines stamped after the cursor are ``changed``."""
Identity = tuple[str, str]


class EventSink(Protocol):
    async def publish_many(self, events: list[CanonicalEvent]) -> None: ...


class Quarantine(Protocol):
    async def put(self, document: Any, reason: str, *, kind: str) -> None: ...


@dataclass(frozen=True)
class Stream:
    """One cursor's worth of polling: ``tradecloud.orders`` or ``tradecloud.shipments``."""

    name: str
    """State-store key of the cursor and the lease."""
    kind: str
    """Metrics label and quarantine kind: ``orders`` | ``shipments``."""
    fetch: Fetch
    normalize: Normalize


@dataclass
class DrainResult:
    stream: str
    cursor_before: str
    cursor_after: str
    pages: int = 0
    published: int = 0
    quarantined: int = 0
    restarts: int = 0
    total: int | None = 0
    """The last answer's ``total`` (None: it did not say)."""
    drained: bool = False
    """False when stopped before the backlog ended (the cursor did not move)."""


class Observer(Protocol):
    """What a drain reports as it goes (metrics, a progress bar)."""

    def page(self, stream: Stream, done: int, total: int | None, published: int) -> None:
        """A page was read: ``done`` documents so far, of ``total`` (None: unknown yet).

        ``published`` of its events were sent.
        """

    def restarted(self, stream: Stream) -> None: ...

    def quarantined(self, stream: Stream) -> None: ...

    def drained(self, stream: Stream) -> None: ...


@dataclass
class _Pending:
    """Publishes of pages awaiting their confirms; the first failure is raised."""

    limit: int
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def add(self, publish: Awaitable[None]) -> None:
        self.tasks.append(asyncio.ensure_future(publish))
        while len(self.tasks) >= self.limit:
            await self.tasks.pop(0)

    async def wait(self) -> None:
        while self.tasks:
            await self.tasks.pop(0)

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


async def drain(
    stream: Stream,
    cursor: str,
    *,
    sink: EventSink,
    commit: Callable[[str], Awaitable[None]],
    quarantine: Quarantine,
    observer: Observer | None = None,
    stop: asyncio.Event | None = None,
    pages_in_flight: int = 3,
) -> DrainResult:
    """Poll ``stream`` from ``cursor`` until drained; publish everything; then commit.

    ``stop`` ends the drain after the current page is published, without
    moving the cursor (the next start re-polls from it).
    """
    result = DrainResult(stream.name, cursor, cursor)
    pending = _Pending(max(pages_in_flight, 1))
    seen: set[Identity] = set()
    prefetch: asyncio.Task[PollPage] | None = None
    try:
        page = await stream.fetch(cursor, 0)
        while True:
            result.pages += 1
            result.total = page.total
            prefetch = _prefetch(stream, cursor, page)
            events = _normalize(stream, cursor, page, seen)
            for document, reason in events.refused:
                await quarantine.put(document, reason, kind=stream.kind)
                result.quarantined += 1
                if observer is not None:
                    observer.quarantined(stream)
            if events.accepted:
                await pending.add(sink.publish_many(events.accepted))
                result.published += len(events.accepted)
            if observer is not None:
                observer.page(
                    stream, page.offset + len(page.data), page.total, len(events.accepted)
                )
            if prefetch is None:
                break
            if stop is not None and stop.is_set():
                await pending.wait()
                log.info("stopped mid-backlog; cursor kept", stream=stream.name, cursor=cursor)
                return result
            following = await prefetch
            prefetch = None
            if _shifted(page, following):
                result.restarts += 1
                if observer is not None:
                    observer.restarted(stream)
                log.info(
                    "backlog shifted while paging; re-reading from offset 0",
                    stream=stream.name,
                    offset=following.offset,
                )
                following = await stream.fetch(cursor, 0)
            page = following
        await pending.wait()
    except BaseException:
        if prefetch is not None:
            prefetch.cancel()
            with contextlib.suppress(BaseException):
                await prefetch
        await pending.cancel()
        raise
    result.drained = True
    if page.data and _advances(cursor, page.last_updated_at, stream):
        assert page.last_updated_at is not None
        await commit(page.last_updated_at)
        result.cursor_after = page.last_updated_at
    if observer is not None:
        observer.drained(stream)
    return result


def _advances(cursor: str, candidate: str | None, stream: Stream) -> bool:
    """Whether ``candidate`` may replace ``cursor``: present, and not older."""
    if not candidate:
        log.warning("answer carries no lastUpdatedAt; cursor kept", stream=stream.name)
        return False
    if candidate == cursor:
        return False
    old, new = parse_timestamp(cursor)["utc"], parse_timestamp(candidate)["utc"]
    if old is not None and new is not None and new < old:
        log.warning(
            "server cursor older than ours; kept ours",
            stream=stream.name,
            ours=cursor,
            server=candidate,
        )
        return False
    return True


def _prefetch(stream: Stream, cursor: str, page: PollPage) -> asyncio.Task[PollPage] | None:
    """Start fetching the page after ``page`` (overlapping it by one document), if any."""
    if page.exhausted or not page.data:
        return None
    overlap = 1 if len(page.data) > 1 else 0
    return asyncio.ensure_future(stream.fetch(cursor, page.offset + len(page.data) - overlap))


def _shifted(page: PollPage, following: PollPage) -> bool:
    """True unless ``following`` starts with the document ``page`` ended with.

    An empty ``following`` shifted too: the overlap document asked for is gone.
    """
    if len(page.data) <= 1:
        return False  # no overlap was requested (limit 1): nothing to compare
    if not following.data:
        return True
    return identity(following.data[0]) != identity(page.data[-1])


def identity(document: Any) -> Identity:
    """(id, stamp) of a polled order or shipment: the same state read twice compares equal."""
    if not isinstance(document, dict):
        return ("", repr(document)[:64])
    stamp = document.get("lastUpdatedAt")
    if stamp is None:
        meta = document.get("meta")
        stamp = meta.get("lastUpdatedAt") if isinstance(meta, dict) else None
    return (
        str(document.get("id", document.get("orderId", ""))),
        f"{document.get('version')}@{stamp}",
    )


@dataclass
class _Normalized:
    accepted: list[CanonicalEvent] = field(default_factory=list)
    refused: list[tuple[Any, str]] = field(default_factory=list)


def _normalize(stream: Stream, cursor: str, page: PollPage, seen: set[Identity]) -> _Normalized:
    out = _Normalized()
    for document in page.data:
        key = identity(document)
        if key in seen:
            continue  # re-read after a shift, or the one-document overlap
        seen.add(key)
        try:
            out.accepted.append(stream.normalize(document, cursor))
        except InvalidPayload as exc:
            log.warning("polled document refused", stream=stream.name, reason=str(exc))
            out.refused.append((document, str(exc)))
    return out
