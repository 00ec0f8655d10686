"""The poll drain against an in-memory backlog that behaves like Tradecloud's poll.

The fake server keeps documents sorted by ``lastUpdatedAt`` (ties by id), answers
``lastUpdatedAfter`` strictly after, pages with offset/limit and reports the
newest stamp, so offset shifts and same-millisecond ties happen as upstream.
"""

from __future__ import annotations

import asyncio
import math
import random
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
    """A stamp → ms since ``EPOCH``; a zone-less one is read as UTC, as Tradecloud's are."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int((moment - EPOCH) / timedelta(milliseconds=1))


class Backlog:
    """Orders by id → (updated_ms, version); ``during_fetch`` lets a test change it mid-drain.

    ``with_total=False`` answers ``{data, lastUpdatedAt}`` as some Tradecloud
    answers do; ``rendered`` overrides how an order's stamp is written (zone-less,
    unparsable); more than ``max_requests`` requests fail the test instead of
    letting a drain that never ends hang it.
    """

    def __init__(
        self,
        stamps: list[int],
        limit: int = 100,
        *,
        with_total: bool = True,
        max_requests: int = 1000,
    ) -> None:
        self.orders = {f"o{i:05d}": (ms, 1) for i, ms in enumerate(stamps)}
        self.limit = limit
        self.with_total = with_total
        self.max_requests = max_requests
        self.requests: list[tuple[str, int]] = []
        self.during_fetch: Callable[[Backlog, int], None] | None = None
        self.clock = max(stamps, default=0)
        self.rendered: Callable[[str, int], str] = lambda _, ms: stamp(ms)
        self.line_ms: dict[str, int] = {}
        """Orders whose line was stamped before their last change (a header-only one)."""
        self.returned: dict[str, None] = {}
        """Ids of every order answered so far, in the order first answered."""
        self.last_answer: list[str] = []

    def update(self, order_id: str, *, header_only: bool = False) -> None:
        """A change now; ``header_only``: the order's line keeps its own older stamp."""
        self.clock += 1
        ms, version = self.orders.get(order_id, (0, 0))
        if header_only:
            self.line_ms.setdefault(order_id, ms)
        else:
            self.line_ms.pop(order_id, None)
        self.orders[order_id] = (self.clock, version + 1)

    def document(self, order_id: str) -> dict[str, Any]:
        ms, version = self.orders[order_id]
        return {
            "id": order_id,
            "version": version,
            "lastUpdatedAt": self.rendered(order_id, ms),
            "status": {"processStatus": "Issued"},
            "lines": [
                {"id": f"{order_id}-1", "lastUpdatedAt": stamp(self.line_ms.get(order_id, ms))}
            ],
        }

    async def fetch(self, cursor: str, offset: int) -> PollPage:
        self.requests.append((cursor, offset))
        assert len(self.requests) <= self.max_requests, "the drain does not finish"
        if self.during_fetch is not None:
            self.during_fetch(self, len(self.requests))
        await asyncio.sleep(0)
        since = to_ms(cursor)
        ordered = sorted((ms, oid) for oid, (ms, _) in self.orders.items() if ms > since)
        window = ordered[offset : offset + self.limit]
        self.last_answer = [oid for _, oid in window]
        self.returned.update(dict.fromkeys(self.last_answer))
        return PollPage(
            data=[self.document(oid) for _, oid in window],
            total=len(ordered) if self.with_total else None,
            last_updated_at=stamp(ordered[-1][0]) if ordered else None,
            offset=offset,
            limit=self.limit,
        )

    def newest(self) -> dict[str, int]:
        """Each order's current version: what a drain must have published last."""
        return {order_id: version for order_id, (_, version) in self.orders.items()}


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


def update_at(request: int, *order_ids: str) -> Callable[[Backlog, int], None]:
    """While request number ``request`` is answered, ``order_ids`` change."""

    def change(server: Backlog, number: int) -> None:
        if number == request:
            for order_id in order_ids:
                server.update(order_id)

    return change


def churn(per_request: int, *, seed: int = 11) -> Callable[[Backlog, int], None]:
    """While each page is answered, ``per_request`` orders already read change.

    Most come from the answer just before (each shifts a run of offset pages),
    the rest from anything read earlier (they only join the end of the backlog).
    """
    rng = random.Random(seed)

    def update_read_orders(server: Backlog, request: int) -> None:
        read = list(server.returned)
        if not read:
            return
        recent = server.last_answer or read
        fresh = rng.sample(recent, min(len(recent), per_request - per_request // 2))
        for order_id in fresh + [rng.choice(read) for _ in range(per_request // 2)]:
            server.update(order_id)

    return update_read_orders


def newest_published(sink: RecordingPublisher) -> dict[str, int]:
    latest: dict[str, int] = {}
    for event in sink.events:
        latest[event.document_id] = max(latest.get(event.document_id, 0), event.version or 0)
    return latest


async def test_an_answer_without_total_pages_on_until_a_short_page() -> None:
    # The tie at 5 straddles offset 100. Without total, the full first page is not the
    # last one: counting it as drained would commit stamp(6) and skip twelve orders.
    backlog = Backlog([0] * 99 + [5] * 3 + [6] * 10, with_total=False)
    pages = PageLog()
    result, sink, commit, _ = await run(backlog, observer=pages)
    assert sorted(ids(sink)) == sorted(backlog.orders)
    assert [offset for _, offset in backlog.requests] == [0, 99]
    assert commit.values == [stamp(6)] and result.drained
    assert pages.pages == [(100, None), (112, 112)]  # the total is known once the end is


async def test_a_full_last_page_without_total_costs_one_request_more() -> None:
    backlog = Backlog(list(range(199)), with_total=False)
    _, sink, commit, _ = await run(backlog)
    assert len(ids(sink)) == 199 and set(ids(sink)) == set(backlog.orders)
    assert [offset for _, offset in backlog.requests] == [0, 99, 198]
    assert commit.values == [stamp(198)]


async def test_a_shift_re_anchors_before_the_last_stamps_tie_group() -> None:
    # Positions 98..102 share ms 98: page one ends inside that tie (100..102 are on page
    # two). The anchor must be 97, the newest stamp strictly older than 98: anchored at
    # 98 (strictly after), the three siblings not read yet would be skipped.
    backlog = Backlog(list(range(98)) + [98] * 5 + list(range(103, 300)))
    backlog.during_fetch = update_at(2, "o00005")
    result, sink, commit, _ = await run(backlog)
    assert backlog.requests[:3] == [(START, 0), (START, 99), (stamp(97), 0)]
    assert set(ids(sink)) == set(backlog.orders) and len(ids(sink)) == 301
    assert newest_published(sink) == backlog.newest()
    assert result.restarts == 1 and commit.values == [stamp(300)]


async def test_after_a_shift_every_page_is_asked_for_by_anchor() -> None:
    backlog = Backlog(list(range(350)))
    backlog.during_fetch = update_at(2, "o00005")
    result, _, _, _ = await run(backlog)
    # Page one (0..99), its shifted successor, then offset 0 under the stamp before each
    # page's last one: each page re-reads one order (its predecessor's last) and no more.
    assert backlog.requests == [
        (START, 0),
        (START, 99),
        (stamp(98), 0),
        (stamp(197), 0),
        (stamp(296), 0),
    ]
    assert result.pages == 4 and result.requests == 5 and result.anchors == 3


async def test_a_run_in_one_millisecond_has_no_anchor_and_restarts_under_the_cursor() -> None:
    backlog = Backlog([7] * 150 + [8] * 10)
    backlog.during_fetch = update_at(2, "o00003")
    result, sink, commit, _ = await run(backlog)
    assert backlog.requests == [(START, 0), (START, 99), (START, 0), (START, 99)]
    assert result.restarts == 1 and result.anchors == 0
    assert set(ids(sink)) == set(backlog.orders) and newest_published(sink) == backlog.newest()
    assert commit.values == [stamp(9)]


async def test_zone_less_document_stamps_are_compared_as_utc_and_sent_back_verbatim() -> None:
    # Even milliseconds are written without a zone (as in Tradecloud's own examples),
    # odd ones with Z: the anchor is compared across both forms and sent as written.
    backlog = Backlog(list(range(300)))
    backlog.rendered = lambda _, ms: stamp(ms).removesuffix("Z") if ms % 2 == 0 else stamp(ms)
    backlog.during_fetch = update_at(2, "o00005")
    result, sink, commit, _ = await run(backlog)
    assert backlog.requests[2] == ("2026-03-01T00:00:00.098", 0)
    assert set(ids(sink)) == set(backlog.orders) and len(ids(sink)) == 301
    assert result.restarts == 1 and commit.values == [stamp(300)]


@pytest.mark.parametrize(
    ("garbled", "restart"),
    [({97, 98}, (stamp(96), 0)), ({99}, (START, 0))],
    ids=["older ones skipped", "the last one: no anchor"],
)
async def test_an_unparsable_stamp_is_never_an_anchor(
    garbled: set[int], restart: tuple[str, int]
) -> None:
    backlog = Backlog(list(range(300)))
    backlog.rendered = lambda _, ms: "last Tuesday" if ms in garbled else stamp(ms)
    backlog.during_fetch = update_at(2, "o00005")
    result, sink, commit, quarantine = await run(backlog)
    assert backlog.requests[2] == restart
    refused = {document["id"] for document, _, _ in quarantine.items}
    assert set(ids(sink)) | refused == set(backlog.orders)
    assert result.restarts == 1 and commit.values == [stamp(300)]


async def test_a_drain_under_steady_updates_finishes_in_bounded_requests_and_skips_nothing() -> (
    None
):
    """5,000 orders, 100 a page, 5 orders already read updated while each page is answered.

    At the simulator's 10 requests a second that is 50 updates a second, ten
    times the 5 a second of the brief. Paging restarted under the cursor never
    ends (every restart meets new updates); with re-anchoring the drain costs
    the first page, the one page that shows the shift, then one request per
    page by anchor, each reading ``limit - 1`` new orders (one is re-read: the
    last stamp's tie group, one order here) while ``per_request`` orders join
    the end of the backlog.
    """
    n, limit, per_request = 5000, 100, 5
    quiet = Backlog(list(range(n)), limit)
    await run(quiet)
    quiet_requests = len(quiet.requests)
    assert quiet_requests == math.ceil((n - 1) / (limit - 1)) == 51  # pages overlap by one

    backlog = Backlog(list(range(n)), limit, max_requests=10 * quiet_requests)
    backlog.during_fetch = churn(per_request)
    result, sink, commit, _ = await run(backlog)
    requests = len(backlog.requests)
    bound = 2 + math.ceil((n - limit + 2 * per_request) / (limit - 1 - per_request)) + 1
    assert requests <= bound < 2 * quiet_requests, (requests, bound)
    assert result.requests == requests and result.restarts >= 1 and result.drained

    published = [(event.document_id, event.version) for event in sink.events]
    assert len(published) == len(set(published)), "a state was published twice"
    assert newest_published(sink) == backlog.newest(), "a newest state was skipped"
    assert len(backlog.returned) == n
    # One commit, once drained, to the answer's lastUpdatedAt; anchors are never committed.
    assert commit.values == [stamp(backlog.clock)]


async def test_lines_changed_before_an_anchor_are_marked_against_the_cursor() -> None:
    """Why anchors are used for paging only, never committed as the cursor.

    Order 150's line changes at ms 150; before the drain reaches it, a
    header-only change moves the order to the end. A shift re-anchors paging at
    97, then at later stamps, while the order's ms-150 state is never polled.
    Normalized against the drain's cursor, its line is marked changed; against
    an anchor past 150 (what a restart from a committed anchor would poll
    with) it would not be, and a route filtering on changed lines would miss it.
    """
    backlog = Backlog(list(range(300)))

    def change(server: Backlog, request: int) -> None:
        if request == 2:
            server.update("o00150", header_only=True)
            server.update("o00005")

    backlog.during_fetch = change
    result, sink, commit, _ = await run(backlog)
    assert result.anchors >= 2 and any(stamp(149) < a for a, _ in backlog.requests)
    [moved] = [e for e in sink.events if e.document_id == "o00150"]
    assert moved.version == 2 and moved.order is not None
    assert [line.changed for line in moved.order.lines] == [True]
    anchored = normalize(backlog.document("o00150"), stamp(197))
    assert anchored.order is not None and [line.changed for line in anchored.order.lines] == [False]
    assert commit.values == [stamp(301)]  # only the drained backlog's stamp, never an anchor
