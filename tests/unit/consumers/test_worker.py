"""The worker carries the policy out against fakes: no broker, no sleeps.

Each test hands one round to ``RouteWorker.handle`` and reads what the recording
broker, the recording adapter and the in-memory ledger saw.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.consumers.metrics import ConsumerMetrics
from services.consumers.policy import ATTEMPT, ATTEMPTS, REASON, DeadLetter, Retry
from services.consumers.testing import FakeMessage, RecordingAdapter, RecordingBroker
from services.consumers.worker import RouteWorker
from shared.errors import PermanentError, RetryableError, StateUnavailable
from shared.metrics import new_registry
from shared.state.memory import MemoryStateStore
from shared.state.port import Lookup, Record
from tests.support.consumers import make_route, outcomes
from tests.support.documents import Line, OrderState

ROUTE = make_route({"type": "file", "path": "unused"}, retry_delays=(5, 30))
NOW = datetime(2026, 3, 1, tzinfo=UTC)
V5 = OrderState("o1", 5, minute=1, lines={"a": Line(1), "b": Line(1)})
V6 = V5.evolve(version=6, minute=2, lines={"a": Line(1), "b": Line(2, Decimal(3))})


class Setup:
    def __init__(self, ledger: MemoryStateStore | None = None) -> None:
        self.broker = RecordingBroker()
        self.adapter = RecordingAdapter()
        self.ledger = ledger or MemoryStateStore()
        self.metrics = ConsumerMetrics(new_registry())
        self.worker = RouteWorker(
            ROUTE,
            ledger=self.ledger,
            adapter=self.adapter,
            broker=self.broker,
            metrics=self.metrics,
            clock=lambda: NOW,
        )

    def outcomes(self) -> dict[str, float]:
        return outcomes(self.metrics, ROUTE.name)


async def test_applied_then_recorded_then_acked_and_a_redelivery_changes_nothing() -> None:
    s = Setup()
    message = FakeMessage.of(V5.polled())
    await s.worker.handle([message])
    assert s.broker.what() == ["ack"] and len(s.adapter.applied) == 1
    assert s.adapter.applied[0].whole, "a first event applies as published"
    assert await s.ledger.applied_document(ROUTE.name, "tradecloud:order:o1") is not None
    await s.worker.handle([FakeMessage.of(V5.webhook("OrderIssuedByBuyer", lines=("a", "b")))])
    assert s.broker.what() == ["ack", "ack"] and len(s.adapter.applied) == 1
    assert s.outcomes() == {"applied": 1, "duplicate": 1}


async def test_the_adapter_gets_only_the_news() -> None:
    s = Setup()
    await s.worker.handle([FakeMessage.of(V5.polled())])
    await s.worker.handle([FakeMessage.of(V6.polled())])
    item = s.adapter.applied[-1]
    assert (item.header, item.lines) == (True, ("b",))
    effective = item.effective_event
    assert effective.order is not None and [x.line_id for x in effective.order.lines] == ["b"]
    assert effective.applied is not None and effective.applied.lines == ["b"]
    assert item.change, "the change key travels to the adapter"


async def test_a_retryable_failure_goes_to_the_first_delay_queue_and_nothing_is_recorded() -> None:
    s = Setup()
    s.adapter.failures.append(RetryableError("ERP busy"))
    message = FakeMessage.of(V5.polled())
    await s.worker.handle([message])
    [(what, settled, disposition)] = s.broker.settled
    assert (what, settled) == ("retry", message)
    assert isinstance(disposition, Retry)
    assert disposition.queue.endswith(".retry-5s") and disposition.headers[ATTEMPT] == 1
    assert await s.ledger.applied_document(ROUTE.name, "tradecloud:order:o1") is None
    # The copy comes back from the delay queue: applied this time.
    await s.worker.handle([FakeMessage(message.body, disposition.headers, message.message_id)])
    assert s.broker.what() == ["retry", "ack"]
    assert s.outcomes() == {"retried": 1, "applied": 1}


async def test_the_last_attempt_and_a_permanent_failure_dead_letter_with_the_reason() -> None:
    s = Setup()
    s.adapter.failures += [RetryableError("still busy"), PermanentError("unknown article")]
    last = FakeMessage.of(V5.polled(), **{ATTEMPT: 2})
    await s.worker.handle([last])
    await s.worker.handle([FakeMessage.of(V6.evolve(order_id="o2").polled())])
    reasons = [
        (d.reason, d.headers[ATTEMPTS]) for _, _, d in s.broker.settled if isinstance(d, DeadLetter)
    ]
    assert reasons == [("retries_exhausted", 3), ("permanent", 1)]
    assert s.outcomes() == {"dead_lettered": 2}


async def test_an_undecodable_body_is_dead_lettered_as_invalid() -> None:
    s = Setup()
    await s.worker.handle([FakeMessage(b"{not json", {"document_id": "x"}, "m")])
    [(what, _, disposition)] = s.broker.settled
    assert what == "dead_letter" and isinstance(disposition, DeadLetter)
    assert disposition.headers[REASON] == "invalid" and not s.adapter.applied


async def test_a_ledger_that_is_away_retries_the_whole_round() -> None:
    class AwayLedger(MemoryStateStore):
        async def lookup(self, route: str, lookups: object) -> list[object]:  # type: ignore[override]
            raise StateUnavailable("database restarting")

    s = Setup(AwayLedger())
    await s.worker.handle(
        [FakeMessage.of(V5.polled()), FakeMessage.of(V5.evolve(order_id="o2").polled())]
    )
    assert s.broker.what() == ["retry", "retry"] and not s.adapter.applied


async def test_a_broker_gone_while_settling_is_survived_and_the_message_comes_again() -> None:
    s = Setup()
    s.broker.fail_with = ConnectionError("broker away")
    await s.worker.handle([FakeMessage.of(V5.polled())])  # does not raise
    assert s.outcomes() == {}, "nothing is counted before the broker took the settlement"
    s.broker.fail_with = None
    await s.worker.handle([FakeMessage.of(V5.polled())])  # redelivered: already applied
    assert s.outcomes() == {"duplicate": 1} and len(s.adapter.applied) == 1


async def test_a_pushed_webhook_records_its_delivery() -> None:
    s = Setup()
    webhook = V5.webhook("OrderIssuedByBuyer", lines=("a", "b"), message_id="m-1")
    await s.worker.handle([FakeMessage.of(webhook)])
    answers = await s.ledger.lookup(ROUTE.name, [Lookup("tradecloud:order:m-1", "d")])
    assert answers == [(True, None)]


async def test_a_failed_record_after_the_effect_is_retried_in_place_not_requeued() -> None:
    class FlakyLedger(MemoryStateStore):
        failures = 2

        async def record_applied(self, route: str, record: Record) -> bool:
            if self.failures:
                self.failures -= 1
                raise StateUnavailable("database failing over")
            return await super().record_applied(route, record)

    s = Setup(FlakyLedger())
    await s.worker.handle([FakeMessage.of(V5.polled())])
    assert s.broker.what() == ["ack"] and len(s.adapter.applied) == 1
    assert s.outcomes() == {"applied": 1}, "recorded on the third attempt, not re-queued"
