"""The poll drain against an in-memory backlog that behaves like Tradecloud's poll.

The fake server keeps documents sorted by ``lastUpdatedAt`` (ties by id), answers
``lastUpdatedAfter`` strictly after, pages with offset/limit and reports the
newest stamp, so offset shifts and same-millisecond ties happen as upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.poller.drain import Stream, drain
from shared.clients.tradecloud import PollPage
from shared.errors import PublishTimeout
from shared.normalize.tradecloud import normalize_polled_order
from shared.schema.models import CanonicalEvent
from shared.testing import RecordingPublisher

EPOCH = datetime(2026, 3, 1, tzinfo=UTC)
START = "2026-02-01T00:00:00.000Z"


def stamp(ms: int) -> str:
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_ms(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return int((moment - EPOCH) / timedelta(milliseconds=1))


class Backlog:
    """Orders by id → (updated_ms, version); ``during_fetch`` lets a test change it mid-drain.

    ``with_total=False`` answers ``{data, lastUpdatedAt}`` as some Tradecloud
    answers do.
    """

    def __init__(
        self,
        stamps: list[int],
        limit: int = 100,
        *,
        with_total: bool = True,
    ) -> None:
        self.orders = {f"o{i:05d}": (ms, 1) for i, ms in enumerate(stamps)}
        self.limit = limit
        self.with_total = with_total
        self.requests: list[tuple[str, int]] = []
        self.during_fetch: Callable[[Backlog, int], None] | None = None
        self.clock = max(stamps, default=0)

    def update(self, order_id: str) -> None:
        self.clock += 1
        _, version = self.orders.get(order_id, (0, 0))
        self.orders[order_id] = (self.clock, version + 1)

    def document(self, order_id: str) -> dict[str, Any]:
        ms, version = self.orders[order_id]
        return {
            "id": order_id,
            "version": version,
            "lastUpdatedAt": stamp(ms),
            "status": {"processStatus": "Issued"},
            "lines": [{"id": f"{order_id}-1", "lastUpdatedAt": stamp(ms)}],
        }

    async def fetch(self, cursor: str, offset: int) -> PollPage:
        self.requests.append((cursor, offset))
        if self.during_fetch is not None:
            self.during_fetch(self, len(self.requests))
        await asyncio.sleep(0)
        since = to_ms(cursor)
        ordered = sorted((ms, oid) for oid, (ms, _) in self.orders.items() if ms > since)
        window = ordered[offset : offset + self.limit]
        return PollPage(
            data=[self.document(oid) for _, oid in window],
            total=len(ordered) if self.with_total else None,
            last_updated_at=stamp(ordered[-1][0]) if ordered else None,
            offset=offset,
            limit=self.limit,
        )


def normalize(document: Any, since: str) -> CanonicalEvent:
    return normalize_polled_order(
        document, received_at=EPOCH, since=since, role="buyer", echo_policy="own-open-requests"
    )


class Committed:
    def __init__(self) -> None:
        self.values: list[str] = []

    async def __call__(self, cursor: str) -> None:
        self.values.append(cursor)


class Quarantined:
    def __init__(self) -> None:
        self.items: list[tuple[Any, str, str]] = []

    async def put(self, document: Any, reason: str, *, kind: str) -> None:
        self.items.append((document, reason, kind))


async def run(backlog: Backlog, cursor: str = START, **kwargs: Any) -> tuple[Any, ...]:
    sink, commit, quarantine = RecordingPublisher(), Committed(), Quarantined()
    stream = Stream(
        "tradecloud.orders", "orders", backlog.fetch, kwargs.pop("normalize", normalize)
    )
    result = await drain(stream, cursor, sink=sink, commit=commit, quarantine=quarantine, **kwargs)
    return result, sink, commit, quarantine


def ids(sink: RecordingPublisher) -> list[str]:
    return [event.document_id for event in sink.events]


async def test_pages_under_one_cursor_and_commits_the_servers_stamp_once_drained() -> None:
    # 250 orders, 10 sharing each millisecond: every page boundary cuts a tie.
    backlog = Backlog([i // 10 for i in range(250)])
    result, sink, commit, _ = await run(backlog)
    assert sorted(ids(sink)) == sorted(backlog.orders)
    assert len(ids(sink)) == 250  # the one-document overlap is not published twice
    assert {cursor for cursor, _ in backlog.requests} == {START}
    assert [offset for _, offset in backlog.requests] == [0, 99, 198]
    assert commit.values == [stamp(24)]
    assert result.drained and result.cursor_after == stamp(24) and result.pages == 3


async def test_same_millisecond_siblings_across_a_boundary_are_not_skipped() -> None:
    backlog = Backlog([0] * 99 + [5] * 3 + [6] * 10)  # the tie at 5 straddles offset 100
    _, sink, commit, _ = await run(backlog)
    assert sorted(ids(sink)) == sorted(backlog.orders)
    assert commit.values == [stamp(6)]


async def test_lines_changed_after_the_cursor_are_marked() -> None:
    backlog = Backlog([10, 20])
    _, sink, _, _ = await run(backlog, cursor=stamp(15))
    assert [e.document_id for e in sink.events] == ["o00001"]
    assert sink.events[0].channel == "poll" and sink.events[0].order is not None
    assert [line.changed for line in sink.events[0].order.lines] == [True]


async def test_an_empty_answer_keeps_the_cursor() -> None:
    result, sink, commit, _ = await run(Backlog([]))
    assert sink.events == [] and commit.values == []
    assert result.drained and result.cursor_after == START


async def test_an_order_updated_behind_the_offset_restarts_paging_and_skips_nothing() -> None:
    backlog = Backlog(list(range(300)))

    def touch_an_early_order(server: Backlog, request: int) -> None:
        if request == 2:  # while we fetch page 2, order 5 (on page 1) changes
            server.update("o00005")

    backlog.during_fetch = touch_an_early_order
    result, sink, commit, _ = await run(backlog)
    published = ids(sink)
    assert set(published) == set(backlog.orders)
    # o00005 twice (old and new version), everything else once
    assert len(published) == 301
    assert result.restarts == 1
    assert commit.values == [stamp(300)]
    versions = [e.version for e in sink.events if e.document_id == "o00005"]
    assert versions == [1, 2]


async def test_plain_offset_paging_would_have_skipped_a_document() -> None:
    """The hazard the overlap guards against, shown on the same fake server."""
    backlog = Backlog(list(range(300)))
    first = await backlog.fetch(START, 0)
    backlog.update("o00005")
    second = await backlog.fetch(START, 100)
    seen = {d["id"] for d in first.data} | {d["id"] for d in second.data}
    assert "o00100" not in seen  # slid back to offset 99, behind the next page


async def test_a_failed_publish_commits_nothing() -> None:
    backlog = Backlog(list(range(150)))
    sink, commit, quarantine = RecordingPublisher(), Committed(), Quarantined()
    sink.fail_with = PublishTimeout("no confirm")
    stream = Stream("tradecloud.orders", "orders", backlog.fetch, normalize)
    with pytest.raises(PublishTimeout):
        await drain(stream, START, sink=sink, commit=commit, quarantine=quarantine)
    assert commit.values == []


async def test_a_failed_fetch_commits_nothing() -> None:
    backlog = Backlog(list(range(250)))

    def fail_on_third(_: Backlog, request: int) -> None:
        if request == 3:
            raise ConnectionError("upstream gone")

    backlog.during_fetch = fail_on_third
    sink, commit, quarantine = RecordingPublisher(), Committed(), Quarantined()
    stream = Stream("tradecloud.orders", "orders", backlog.fetch, normalize)
    with pytest.raises(ConnectionError):
        await drain(stream, START, sink=sink, commit=commit, quarantine=quarantine)
    assert commit.values == []
    assert len(sink.events) == 199  # two pages were read and published; no harm


async def test_a_refused_document_is_quarantined_and_the_stream_moves_on() -> None:
    backlog = Backlog([1, 2, 3])
    original = backlog.document

    def broken(order_id: str) -> dict[str, Any]:
        document = original(order_id)
        if order_id == "o00001":
            del document["lines"]
        return document

    backlog.document = broken  # type: ignore[method-assign]
    result, sink, commit, quarantine = await run(backlog)
    assert ids(sink) == ["o00000", "o00002"]
    [(document, reason, kind)] = quarantine.items
    assert document["id"] == "o00001" and "lines" in reason and kind == "orders"
    assert result.quarantined == 1 and commit.values == [stamp(3)]


async def test_stop_finishes_the_page_and_keeps_the_cursor() -> None:
    backlog = Backlog(list(range(250)))
    stop = asyncio.Event()
    stop.set()
    result, sink, commit, _ = await run(backlog, stop=stop)
    assert len(sink.events) == 100
    assert not result.drained and commit.values == []


async def test_orders_arriving_while_paging_are_picked_up_in_the_same_drain() -> None:
    backlog = Backlog(list(range(150)))

    def add_orders(server: Backlog, request: int) -> None:
        if request == 2:
            for n in range(3):
                server.update(f"new{n}")

    backlog.during_fetch = add_orders
    _, sink, commit, _ = await run(backlog)
    assert {"new0", "new1", "new2"} <= set(ids(sink))
    assert commit.values == [stamp(152)]


async def test_a_cursor_never_moves_backwards() -> None:
    backlog = Backlog([10, 20])
    original = backlog.fetch

    async def stale_answer(cursor: str, offset: int) -> PollPage:
        page = await original(cursor, offset)
        return PollPage(page.data, page.total, "2020-01-01T00:00:00.000Z", page.offset)

    backlog.fetch = stale_answer  # type: ignore[method-assign]
    result, sink, commit, _ = await run(backlog)
    assert len(sink.events) == 2 and commit.values == [] and result.cursor_after == START


async def test_an_answer_without_any_stamp_keeps_the_cursor() -> None:
    backlog = Backlog([10])
    original = backlog.fetch

    async def no_stamp(cursor: str, offset: int) -> PollPage:
        page = await original(cursor, offset)
        return PollPage(page.data, page.total, None, page.offset)

    backlog.fetch = no_stamp  # type: ignore[method-assign]
    result, _, commit, _ = await run(backlog)
    assert commit.values == [] and result.drained


class GatedSink:
    """Confirms arrive only when the test opens the gate (a slow broker)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[CanonicalEvent] = []
        self.confirmed: list[CanonicalEvent] = []

    async def publish_many(self, events: list[CanonicalEvent]) -> None:
        self.sent.extend(events)
        await self.gate.wait()
        self.confirmed.extend(events)


async def test_the_cursor_moves_only_after_every_confirm_even_with_pages_in_flight() -> None:
    backlog = Backlog(list(range(250)))
    sink, commit = GatedSink(), Committed()
    stream = Stream("tradecloud.orders", "orders", backlog.fetch, normalize)
    task = asyncio.ensure_future(
        drain(stream, START, sink=sink, commit=commit, quarantine=Quarantined())
    )
    while len(sink.sent) < 250:  # every page read and sent, none confirmed
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert commit.values == [] and not task.done()
    sink.gate.set()
    result = await task
    assert len(sink.confirmed) == 250 and commit.values == [stamp(249)] and result.drained


class PageLog:
    """An observer that keeps what each page reported."""

    def __init__(self) -> None:
        self.pages: list[tuple[int, int | None]] = []
        self.restarts = 0

    def page(self, stream: Stream, done: int, total: int | None, published: int) -> None:
        self.pages.append((done, total))

    def restarted(self, stream: Stream) -> None:
        self.restarts += 1

    def quarantined(self, stream: Stream) -> None:
        pass

    def drained(self, stream: Stream) -> None:
        pass


async def test_an_answer_without_total_pages_on_until_a_short_page() -> None:
    # The tie at 5 straddles offset 100. Without total, the full first page is not the
    # last one: counting it as drained would commit stamp(6) and skip twelve orders.
    backlog = Backlog([0] * 99 + [5] * 3 + [6] * 10, with_total=False)
    pages = PageLog()
    result, sink, commit, _ = await run(backlog, observer=pages)
    assert sorted(ids(sink)) == sorted(backlog.orders)
    assert [offset for _, offset in backlog.requests] == [0, 99]
    assert commit.values == [stamp(6)] and result.drained
    assert pages.pages == [(100, None), (112, None)]


async def test_a_full_last_page_without_total_costs_one_request_more() -> None:
    backlog = Backlog(list(range(199)), with_total=False)
    _, sink, commit, _ = await run(backlog)
    assert len(ids(sink)) == 199 and set(ids(sink)) == set(backlog.orders)
    assert [offset for _, offset in backlog.requests] == [0, 99, 198]
    assert commit.values == [stamp(198)]
