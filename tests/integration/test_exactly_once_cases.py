"""Exactly once against the platforms as documented: one test per case, end to end.

Each case publishes what the platform is allowed to send (api-facts §1, §2, §5,
§7) to the real exchange (case 8 through the real ingress), then runs a real
``orderbridge consumer --drain`` process with the file adapter and a SQLite
ledger, and reads the ERP inbox. Every case lost or duplicated an ERP effect
before the consumer decided from document state.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from services.consumers.config import load_config
from services.consumers.topology import route_topology
from shared.broker.connection import declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.schema.codec import dumps_exact
from shared.schema.models import CanonicalEvent
from tests.support.documents import (
    Line,
    OrderState,
    apicbase_event,
    apicbase_order,
    shipment_document,
    shipment_event,
)
from tests.support.ingress import BEARER, JSON_CT, client, serve, test_deps
from tests.support.pulling import finish, start_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SUPPLIER = {"role": "supplier", "echo_policy": "own-open-requests"}


@dataclass
class Erp:
    """One route (file adapter, SQLite ledger) and the consumer process that drains it."""

    config: Path
    route: str
    inbox: Path
    env: dict[str, str]
    connection: AbstractRobustConnection
    publisher: RabbitPublisher

    async def receive(self, events: Sequence[CanonicalEvent]) -> list[dict[str, Any]]:
        """Publish ``events`` in order, run the consumer until drained, read the inbox."""
        for event in events:
            await self.publisher.publish(event)
        return await self.drain()

    async def drain(self) -> list[dict[str, Any]]:
        process = await start_service(
            "consumer",
            "--config",
            str(self.config),
            "--route",
            self.route,
            "--drain",
            env=self.env,
        )
        code, stderr = await finish(process, within=90)
        assert code == 0, stderr[-3000:]
        return [json.loads(path.read_bytes()) for path in sorted(self.inbox.glob("*.json"))]


@pytest.fixture
async def erp(
    tmp_path: Path,
    amqp_url: str,
    connection: AbstractRobustConnection,
    publisher: RabbitPublisher,
) -> Erp:
    route = f"cases-{uuid.uuid4().hex[:8]}"
    inbox = tmp_path / "inbox"
    config = tmp_path / "routes.toml"
    config.write_text(f"""
[[routes]]
name = "{route}"
bindings = ["tradecloud.#", "apicbase.#"]
shards = 2
retry_delays = [0.5]
[routes.adapter]
type = "file"
path = "{inbox}"
""")
    await declare_topology(connection, route_topology(load_config(config).route(route)))
    env = {
        "ORDERBRIDGE_AMQP_URL": amqp_url,
        "ORDERBRIDGE_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "ORDERBRIDGE_METRICS_PORT": "0",
        "ORDERBRIDGE_LOG_LEVEL": "WARNING",
    }
    return Erp(config, route, inbox, env, connection, publisher)


def lines_of(file: dict[str, Any]) -> list[str]:
    document = file["order"] or file["shipment"]
    return [line.get("line_id") or line.get("position") for line in document["lines"]]


BASE = OrderState("o", 5, minute=1, lines={"a": Line(1), "b": Line(1)})


def fresh(state: OrderState) -> OrderState:
    """``state`` for a document of its own (the route's ledger outlives one test's names)."""
    return state.evolve(order_id=f"o-{uuid.uuid4().hex[:8]}")


async def test_1_a_newer_version_changing_only_the_header_reaches_the_erp(erp: Erp) -> None:
    v5 = fresh(BASE)
    v6 = v5.evolve(version=6, minute=2, contact="new.buyer@example.com")  # no line re-stamped
    v7 = v6.evolve(version=7, minute=3, labels=("urgent",))  # a field kept in raw only
    files = await erp.receive([v5.polled(), v6.polled(), v7.polled()])
    assert [f["version"] for f in files] == [5, 6, 7]
    assert files[1]["applied"] == {"header": True, "lines": []}
    assert files[1]["order"]["buyer"]["contact"] == "new.buyer@example.com"


async def test_2_events_sharing_a_version_each_bring_their_change(erp: Erp) -> None:
    v5 = fresh(BASE)
    v6 = v5.evolve(version=6, minute=2, lines={"a": Line(2, Decimal(1)), "b": Line(2, Decimal(2))})
    documents = json.loads(dumps_exact(_documents_event(v6, "first.pdf")))
    second_documents = json.loads(dumps_exact(_documents_event(v6, "second.pdf")))
    files = await erp.receive(
        [
            v5.polled(),
            # v6 touched a and b; the event for b was refused upstream and is lost.
            v6.webhook("OrderLinesUpdatedByBuyer", lines=("a",)),
            v6.webhook("OrderLinesDeliveryHistorySetByBuyer", lines=("a",)),  # same content
            v6.webhook("OrderResentByBuyer", lines=("a", "b")),  # the portal resend
            _normalized_documents(documents),
            _normalized_documents(second_documents),  # documents again, no version bump
        ]
    )
    orders = [f for f in files if f["kind"] == "order"]
    assert [(f["event_name"], lines_of(f)) for f in orders] == [
        (None, ["a", "b"]),
        ("OrderLinesUpdatedByBuyer", ["a"]),
        ("OrderResentByBuyer", ["b"]),
    ]
    attached = [f for f in files if f["kind"] == "order_documents"]
    assert [d["name"] for f in attached for d in f["order"]["documents"]] == [
        "first.pdf",
        "second.pdf",
    ]


def _documents_event(state: OrderState, name: str) -> dict[str, Any]:
    return {
        "eventName": "OrderDocumentsAttachedBySupplier",
        "orderDocumentsEvent": {
            "orderId": state.order_id,
            "version": state.version,
            "supplierOrder": {"documents": [{"name": name, "objectId": name}]},
            "lastUpdatedAt": "2026-02-01T10:02:00.000Z",
        },
        "meta": {"messageId": f"docs-{name}"},
    }


def _normalized_documents(body: dict[str, Any]) -> CanonicalEvent:
    from shared.normalize import tradecloud
    from tests.support.documents import RECEIVED

    return tradecloud.normalize_order_webhook(body, received_at=RECEIVED)


async def test_3_a_polled_newer_version_with_the_last_webhooks_message_id_applies(
    erp: Erp,
) -> None:
    v5 = fresh(BASE)
    v6 = v5.evolve(version=6, minute=2, lines={"a": Line(1), "b": Line(2, Decimal(9))})
    webhook = v5.webhook("OrderIssuedByBuyer", lines=("a", "b"), message_id="m-last")
    polled = v6.evolve(message_id="m-last").polled()  # v6 came by no webhook of ours
    files = await erp.receive([webhook, polled])
    assert [(f["channel"], f["version"], lines_of(f)) for f in files] == [
        ("webhook", 5, ["a", "b"]),
        ("poll", 6, ["b"]),
    ]


async def test_4_shipment_status_and_header_changes_that_re_stamp_no_line(erp: Erp) -> None:
    shipment_id = f"SUP-SN{uuid.uuid4().hex[:6]}"

    def state(minute: int, **changes: Any) -> CanonicalEvent:
        document = shipment_document(shipment_id, minute=minute, line_minutes=(1, 1), **changes)
        return shipment_event(document, "ShipmentEvent")

    files = await erp.receive(
        [
            state(1),
            state(2, status="Approved"),
            state(3, status="Rejected", reason="wrong quantity"),
            state(4, status="Rejected", reason="wrong quantity", atd="2026-02-03"),
        ]
    )
    assert [f["process_status"] for f in files] == ["Issued", "Approved", "Rejected", "Rejected"]
    assert [f["applied"] for f in files[1:]] == [{"header": True, "lines": []}] * 3


async def test_5_an_apicbase_order_is_one_erp_order_whatever_the_copy(erp: Erp) -> None:
    order_id = str(uuid.uuid4())
    webhook = apicbase_order(order_id, price="26.10", ordered_on="2026-02-01T11:30:00.123456+01:00")
    api = apicbase_order(order_id, price="26.1", ordered_on="2026-02-01T10:30:00.123Z")
    api["fetched_by_supplier"] = True
    replaced = copy.deepcopy(webhook)  # placed again after an error at checkout: same id
    edited = apicbase_order(
        order_id, price="26.10", quantity=5, ordered_on="2026-02-01T11:40:00+01:00"
    )
    files = await erp.receive(
        [
            apicbase_event(webhook),
            apicbase_event(api, "api"),
            apicbase_event(replaced),
            apicbase_event(edited),  # re-placed with another quantity: the same ERP order
        ]
    )
    assert [(f["document_id"], f["channel"]) for f in files] == [
        (order_id, "webhook"),
        (order_id, "webhook"),
    ]
    assert files[1]["order"]["lines"][0]["delivery_schedule"][0]["quantity"] == "5"


async def test_6_a_mixed_echo_event_delivers_only_the_lines_that_are_not_echoes(erp: Erp) -> None:
    v5 = fresh(BASE)
    v6 = v5.evolve(
        version=6,
        minute=2,
        lines={
            # our own proposal reflected back, with the old values
            "a": Line(2, status="InProgress", in_progress="OpenSupplierProposal"),
            "b": Line(2, Decimal(12)),  # the buyer's change
        },
    )
    files = await erp.receive(
        [
            v5.polled(**SUPPLIER),
            v6.webhook("OrderLinesUpdatedByBuyer", lines=("a", "b"), **SUPPLIER),
        ]
    )
    assert [lines_of(f) for f in files] == [["a", "b"], ["b"]]
    assert files[1]["applied"] == {"header": True, "lines": ["b"]}


async def test_7_an_older_zone_less_state_arriving_late_is_not_applied(erp: Erp) -> None:
    shipment_id = f"SUP-SN{uuid.uuid4().hex[:6]}"
    newer = shipment_document(shipment_id, minute=5, line_minutes=(5,), zoneless=True)
    older = shipment_document(shipment_id, minute=4, line_minutes=(4,), zoneless=True)
    v5 = fresh(BASE).evolve(zoneless=True)
    v6 = v5.evolve(version=6, minute=2, lines={"a": Line(2, Decimal(3)), "b": Line(1)})
    files = await erp.receive(
        [shipment_event(newer), shipment_event(older), v6.polled(), v5.polled()]
    )
    assert sorted((f["kind"], f["last_updated_at"]["text"]) for f in files) == [
        ("order", v6.document()["lastUpdatedAt"]),
        ("shipment", newer["meta"]["lastUpdatedAt"]),
    ]


async def test_8_an_order_webhook_without_lines_is_accepted_and_applied(
    erp: Erp, publisher: RabbitPublisher
) -> None:
    v5 = fresh(BASE)
    v6 = v5.evolve(version=6, minute=2, contact="reassigned@example.com")
    async with serve(test_deps(publisher)) as (url, _), client(url) as http:
        for body in (
            v5.webhook_body("OrderIssuedByBuyer", lines=("a", "b")),
            v6.webhook_body("OrderContactReassignedByBuyer", without_lines_key=True),
        ):
            async with http.post(
                "/webhooks/tradecloud/orders", data=dumps_exact(body), headers=BEARER | JSON_CT
            ) as answer:
                assert answer.status == 202, await answer.text()
    files = await erp.drain()
    assert [(f["event_name"], lines_of(f)) for f in files] == [
        ("OrderIssuedByBuyer", ["a", "b"]),
        ("OrderContactReassignedByBuyer", []),
    ]
    assert files[1]["order"]["buyer"]["contact"] == "reassigned@example.com"
