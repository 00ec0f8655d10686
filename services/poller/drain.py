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
  shifted.
* **Re-anchoring.** Restarting at offset 0 under the original cursor after a
  shift re-reads everything, and on a big backlog with a few updates a second
  it restarts forever. So a shift restarts at offset 0 under an in-drain
  *anchor* instead: the ``lastUpdatedAt`` text, verbatim as the server sent
  it, of the newest document read since the last (re)start whose stamp is
  strictly older than the stamp of the last document read. Why that is safe:
  the pages read since the (re)start were one contiguous run of the sorted
  backlog (every overlap matched), so every document stamped at or before
  the anchor has been read in its current state; a document updated since
  gets a stamp newer than everything read, so it moved past the anchor and
  is read again. ``lastUpdatedAfter`` is strictly after, and the anchor is
  older than the last stamp read, so that stamp's whole tie group is re-read
  rather than skipped. Stamps are compared as instants
  (``parse_timestamp``; a zone-less one, as in Tradecloud's own examples, is
  read as UTC); an unparsable stamp is never an anchor. When no stamp read is
  older than the last one (a whole run in one millisecond), the restart is
  at offset 0 under the current anchor, as before.
* **Paging by anchor.** A backlog that shifted once keeps shifting under
  steady change traffic, and each shift costs a page read for nothing. So
  after the first shift every next page is asked for the same way, at offset
  0 under the anchor of the page just read (the same argument holds for one
  page as for a run): no overlap to verify, nothing to shift, one request per
  page, and drain time bounded by the backlog plus the changes made while
  draining. A page without such an anchor (one millisecond throughout) is
  followed by offset paging under the current anchor, with the overlap check.
  Quiet drains never leave plain offset paging under the cursor.
* Documents already published in this drain are skipped when read again
  (same id, version and stamp): the one-document overlap, a re-read tie
  group, a re-read after a shift. Events are normalized against the drain's
  cursor throughout, never an anchor, so lines changed since the cursor are
  marked ``changed`` whichever request read them.
* **Anchors are not committed.** A restart from a committed anchor would
  normalize against it: a document updated before its old position was read
  carries lines changed between the cursor and the anchor that no published
  event marked ``changed``, and a route filtering on changed lines would miss
  them. Only the drained backlog commits, to the response-level
  ``lastUpdatedAt``; a stop or a crash re-polls from the cursor.
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
from datetime import datetime
from typing import Any, Protocol

from shared.applied import instant
from shared.clients.tradecloud import PollPage
from shared.errors import InvalidPayload
from shared.logging import get_logger
from shared.normalize.fields import parse_timestamp
from shared.schema.models import CanonicalEvent

log = get_logger(__name__)

Fetch = Callable[[str, int], Awaitable[PollPage]]
"""(cursor or in-drain anchor, offset) → one page polled with ``lastUpdatedAfter`` = it."""
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
    """Pages read and published (a page discarded because the backlog shifted is not one)."""
    requests: int = 0
    """Poll requests made, shifted pages included."""
    published: int = 0
    quarantined: int = 0
    restarts: int = 0
    """Shifts seen: each restarted paging at offset 0 (under a new anchor when there was one)."""
    anchors: int = 0
    """Requests made under an in-drain anchor rather than the cursor (re-anchoring)."""
    total: int | None = 0
    """Documents read, plus what the last answer said was left (None: it did not say)."""
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
    run = _Run(cursor)
    by_anchor = False  # set by the first shift: from then on every page is asked by anchor
    prefetch: asyncio.Task[PollPage] | None = None

    async def fetch(request: _Request) -> PollPage:
        result.requests += 1
        if request.anchor != cursor:
            result.anchors += 1
        return await stream.fetch(request.anchor, request.offset)

    try:
        page = await fetch(_Request(cursor, 0))
        while True:
            result.pages += 1
            run.extend(page.data)
            request = _next_request(page, run, by_anchor=by_anchor)
            prefetch = asyncio.ensure_future(fetch(request)) if request is not None else None
            events = _normalize(stream, cursor, page, seen)
            for document, reason in events.refused:
                await quarantine.put(document, reason, kind=stream.kind)
                result.quarantined += 1
                if observer is not None:
                    observer.quarantined(stream)
            if events.accepted:
                await pending.add(sink.publish_many(events.accepted))
                result.published += len(events.accepted)
            result.total = _estimate(len(seen), page)
            if observer is not None:
                observer.page(stream, len(seen), result.total, len(events.accepted))
            if prefetch is None or request is None:
                break
            if stop is not None and stop.is_set():
                await pending.wait()
                log.info("stopped mid-backlog; cursor kept", stream=stream.name, cursor=cursor)
                return result
            following = await prefetch
            prefetch = None
            if request.overlap and _shifted(page, following):
                result.restarts += 1
                if observer is not None:
                    observer.restarted(stream)
                anchor = run.anchor_for_restart()
                by_anchor = by_anchor or anchor is not None
                log.info(
                    "backlog shifted while paging; re-reading from offset 0",
                    stream=stream.name,
                    offset=following.offset,
                    under=anchor or run.anchor,
                    reanchored=anchor is not None,
                )
                run = _Run(anchor or run.anchor)
                following = await fetch(_Request(run.anchor, 0))
            elif request.anchor != run.anchor:
                run = _Run(request.anchor)
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


@dataclass(frozen=True)
class _Request:
    """One poll request: ``lastUpdatedAfter=anchor`` at ``offset``."""

    anchor: str
    offset: int
    overlap: bool = False
    """Whether the page must start with the last document of the page before it."""


@dataclass
class _Run:
    """The documents read, in poll order, since paging (re)started under ``anchor``.

    Every overlap between them matched, so they are one contiguous run of the
    backlog sorted by ``lastUpdatedAt``: what ``anchor_for_restart`` relies on.
    """

    anchor: str
    stamps: list[tuple[datetime | None, str | None]] = field(default_factory=list)
    """Each document's stamp as an instant (None: absent or unparsable) and verbatim."""

    def extend(self, documents: list[Any]) -> None:
        for document in documents:
            text = _stamp(document)
            self.stamps.append((_instant(text) if text is not None else None, text))

    def anchor_for_restart(self) -> str | None:
        """The verbatim stamp of the newest document read strictly before the last one's stamp.

        None when there is none (the last stamp is unparsable, or everything
        read shares its millisecond) or when it would not move past ``anchor``.
        """
        if not self.stamps:
            return None
        last = self.stamps[-1][0]
        if last is None:
            return None
        floor = _instant(self.anchor)
        for moment, text in reversed(self.stamps):
            if moment is None or text is None or moment >= last:
                continue  # unparsable, or the last stamp's tie group: it is re-read
            if (floor is not None and moment <= floor) or text == self.anchor:
                return None
            return text
        return None


def _next_request(page: PollPage, run: _Run, *, by_anchor: bool) -> _Request | None:
    """The page to ask for after ``page``, or None when ``page`` ended the backlog.

    By offset under the run's anchor, overlapping ``page`` by one document; by
    anchor (offset 0 under the newest stamp before the last one read) once the
    backlog has shifted, when the run has such a stamp.
    """
    if page.exhausted or not page.data:
        return None
    if by_anchor and (anchor := run.anchor_for_restart()) is not None:
        return _Request(anchor, 0)
    overlap = 1 if len(page.data) > 1 else 0
    return _Request(run.anchor, page.offset + len(page.data) - overlap, overlap=bool(overlap))


def _estimate(read: int, page: PollPage) -> int | None:
    """Documents read so far plus those the answer says are still to come, if it says."""
    if page.total is not None:
        return read + max(page.total - page.offset - len(page.data), 0)
    return read if page.exhausted else None


def _advances(cursor: str, candidate: str | None, stream: Stream) -> bool:
    """Whether ``candidate`` may replace ``cursor``: present, and not older."""
    if not candidate:
        log.warning("answer carries no lastUpdatedAt; cursor kept", stream=stream.name)
        return False
    if candidate == cursor:
        return False
    old, new = _instant(cursor), _instant(candidate)
    if old is not None and new is not None and new < old:
        log.warning(
            "server cursor older than ours; kept ours",
            stream=stream.name,
            ours=cursor,
            server=candidate,
        )
        return False
    return True


def _shifted(page: PollPage, following: PollPage) -> bool:
    """True unless ``following`` starts with the document ``page`` ended with.

    An empty ``following`` shifted too: the overlap document asked for is gone.
    """
    if len(page.data) <= 1:
        return False  # no overlap was requested (limit 1): nothing to compare
    if not following.data:
        return True
    return identity(following.data[0]) != identity(page.data[-1])


def _stamp(document: Any) -> str | None:
    """A polled document's ``lastUpdatedAt`` (shipments keep it in ``meta``), if text."""
    if not isinstance(document, dict):
        return None
    stamp = document.get("lastUpdatedAt")
    if stamp is None:
        meta = document.get("meta")
        stamp = meta.get("lastUpdatedAt") if isinstance(meta, dict) else None
    return stamp if isinstance(stamp, str) else None


def _instant(text: str) -> datetime | None:
    """``text`` as a UTC instant; a zone-less date-time is read as UTC; else None.

    Tradecloud's cursors carry ``Z``, but documents' own stamps may not
    (api-facts §7.1): comparing them needs one reading of both, the same the
    consumers use (``shared.applied.instant``).
    """
    return instant(parse_timestamp(text))


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
            continue  # the one-document overlap, a re-read tie group, a re-read after a shift
        seen.add(key)
        try:
            out.accepted.append(stream.normalize(document, cursor))
        except InvalidPayload as exc:
            log.warning("polled document refused", stream=stream.name, reason=str(exc))
            out.refused.append((document, str(exc)))
    return out
