"""The simulators' webhook senders against the real ingress and RabbitMQ (the demo's path)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from aio_pika.abc import AbstractRobustConnection

from services.simulators.tradecloud.content import RequestSpec
from services.simulators.tradecloud.webhooks import Kind, WebhookTarget
from shared.broker.publisher import RabbitPublisher
from shared.schema.codec import decode_event
from tests.support.apicbase_sim import running_apicbase
from tests.support.ingress import APICBASE_SECRET, TOKEN, EventTap, serve, test_deps
from tests.support.simulators import running_tradecloud

pytestmark = pytest.mark.integration


async def test_tradecloud_pushes_order_document_and_shipment_events_that_ingress_publishes(
    connection: AbstractRobustConnection, publisher: RabbitPublisher
) -> None:
    tap = await EventTap.open(connection, "tradecloud.#")
    try:
        async with (
            serve(test_deps(publisher)) as (base, _),
            running_tradecloud(rate_limit=1000) as tradecloud,
        ):
            sim = tradecloud.simulator
            targets: tuple[tuple[Kind, str], ...] = (
                ("order", "orders"),
                ("order_documents", "orders"),
                ("shipment", "shipments"),
            )
            for kind, path in targets:
                sim.sender.configure(
                    WebhookTarget(kind, f"{base}/webhooks/tradecloud/{path}", token=TOKEN)
                )
            order_id = sim.create_orders(1, lines=1)[0]
            sim.advance(order_id, "accept")
            sim.advance(order_id, "attach_document")
            sim.advance(order_id, "produce")
            sim.advance(order_id, "ship")
            await sim.sender.idle(20)
            deliveries = sim.sender.deliveries
            assert {d.kind for d in deliveries} == {"order", "order_documents", "shipment"}
            assert all(d.state == "delivered" and d.attempts == [202] for d in deliveries)
            events = [decode_event((await tap.next()).body) for _ in deliveries]
        assert sorted(e.message_id or "" for e in events) == sorted(
            d.message_id for d in deliveries
        )
        kinds = {(e.kind, e.channel) for e in events}
        assert kinds == {
            ("order", "webhook"),
            ("order_documents", "webhook"),
            ("shipment", "webhook"),
        }
        version = max(e.version or 0 for e in events if e.kind == "order")
        assert version == sim.world.orders[order_id].version
    finally:
        await tap.close()


@pytest.mark.parametrize("single_delivery", [False, True], ids=["schedule", "single"])
async def test_a_proposal_in_yuan_with_18_decimals_reaches_the_canonical_event_exactly(
    connection: AbstractRobustConnection, publisher: RabbitPublisher, single_delivery: bool
) -> None:
    """The issue's case, made on demand: another date and quantity, CNY with 18 decimals,
    reason "capacity", no ``pricesIncludingRequests`` on the line."""
    tap = await EventTap.open(connection, "tradecloud.order.#")
    spec = RequestSpec(
        reason="capacity",
        currency="CNY",
        price=Decimal("3.045370369287037036"),
        quantity=Decimal(37),
        days=21,
        prices_including_requests=False,
    )
    try:
        async with (
            serve(test_deps(publisher)) as (base, _),
            running_tradecloud(rate_limit=1000) as tradecloud,
        ):
            sim = tradecloud.simulator
            sim.sender.configure(
                WebhookTarget(
                    "order",
                    f"{base}/webhooks/tradecloud/orders",
                    token=TOKEN,
                    single_delivery=single_delivery,
                )
            )
            (order_id,) = sim.create_orders(1, lines=1, proposal=spec)
            await sim.sender.idle(20)
            issued, proposed = [decode_event((await tap.next()).body) for _ in range(2)]
        assert proposed.event_name == "OrderChangesProposedBySupplier"
        assert proposed.document_id == order_id and proposed.order is not None
        (line,) = proposed.order.lines
        assert line.in_progress_status == "OpenSupplierProposal"
        assert line.prices_including_requests is None
        field = "singleDeliveryOrderEvent" if single_delivery else "orderEvent"
        (raw_line,) = proposed.raw[field]["lines"]
        proposal = raw_line["supplierLine"]["requests"]["proposal"]
        net = proposal["prices"]["netPrice"]["priceInTransactionCurrency"]
        assert (str(net["value"]), net["currencyIso"]) == ("3.045370369287037036", "CNY")
        assert proposal["reason"] == "capacity"
        values = (
            proposal["scheduledDelivery"] if single_delivery else proposal["deliverySchedule"][0]
        )
        assert values["quantity"] == 37
        assert issued.order is not None
        issued_date = issued.order.lines[0].delivery_schedule[0]["date"]
        assert issued_date is not None and values["date"] > issued_date["text"]
    finally:
        await tap.close()


async def test_apicbase_webhooks_in_both_body_forms_pass_the_signature_check(
    connection: AbstractRobustConnection, publisher: RabbitPublisher
) -> None:
    tap = await EventTap.open(connection, "apicbase.#")
    try:
        async with (
            serve(test_deps(publisher)) as (base, _),
            running_apicbase() as apicbase,
        ):
            sim = apicbase.simulator
            url = f"{base}/webhooks/apicbase/orders"
            sim.configure_webhook(url, key=APICBASE_SECRET)
            compact = await sim.place_orders(1, pretty=False)
            pretty = await sim.place_orders(1, pretty=True)
            placed = [*compact, *pretty]
            assert [d.state for d in placed] == ["sent", "sent"], [d.error for d in placed]
            assert [d.form for d in placed] != [placed[0].form] * 2, "both body forms were sent"
            events = [decode_event((await tap.next()).body) for _ in placed]
            assert [e.document_id for e in events] == [d.order_id for d in placed]
            assert all(e.source == "apicbase" and e.channel == "webhook" for e in events)
            assert all(sim.order(d.order_id).status == "ORDERED" for d in placed)
            sim.configure_webhook(url, key="not-the-shared-secret")
            (refused,) = await sim.place_orders(1)
            assert refused.state == "not_sent" and refused.status == 403
            assert sim.order(refused.order_id).status == "IN_PROGRESS", "left in the cart"
            assert await tap.queue.get(no_ack=True, fail=False) is None, "nothing published"
    finally:
        await tap.close()
