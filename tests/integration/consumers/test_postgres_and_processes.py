"""The postgres adapter, two consumer processes on one route, and a broker restart."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from services.consumers.adapters import Application
from services.consumers.adapters.postgres import STAGING, STAGING_COLUMNS, PostgresAdapter
from services.consumers.policy import decide
from services.consumers.topology import shard_queue
from shared.applied import HEADER
from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.local_rabbit import LocalRabbit, installed
from shared.normalize import tradecloud
from shared.schema.codec import encode_event
from shared.schema.models import CanonicalEvent
from shared.settings import BrokerSettings
from shared.state.port import AppliedDocument, Record
from tests.support.consumers import make_route, outcomes, running, sqlite_state
from tests.support.documents import shipment_document, shipment_event
from tests.support.events import order_event
from tests.support.files import fixture
from tests.support.postgres import private_database
from tests.support.rabbit import list_consumers

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 2, 1, tzinfo=UTC)


def polled(document_id: str, version: int) -> CanonicalEvent:
    stamp = (T0 + timedelta(minutes=version)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    order = {
        "id": document_id,
        "version": version,
        "buyerOrder": {"purchaseOrderNumber": f"PO-{document_id[-6:]}"},
        "status": {"processStatus": "Confirmed", "logisticsStatus": "Open"},
        "lines": [
            {
                "id": f"{document_id}-{n}",
                "buyerLine": {"position": str(n)},
                "deliverySchedule": [{"date": "2026-03-01", "quantity": version}],
                "status": {"processStatus": "Confirmed"},
                "lastUpdatedAt": stamp,
            }
            for n in (1, 2)
        ],
        "lastUpdatedAt": stamp,
    }
    return tradecloud.normalize_polled_order(order, received_at=T0)


@pytest.fixture
async def erp_database() -> AsyncIterator[str]:
    async with private_database("orderbridge_erp") as url:
        yield url


async def test_postgres_adapter_upserts_with_the_ledger_in_one_transaction(
    erp_database: str,
) -> None:
    adapter = PostgresAdapter(erp_database)
    route = make_route({"type": "postgres", "url": erp_database})

    def application(
        event: CanonicalEvent, applied: AppliedDocument | None
    ) -> tuple[Application, Record]:
        decision = decide(event, route, delivered=False, applied=applied)
        assert decision.record is not None
        return (
            Application("r", event, encode_event(event), header=decision.header),
            decision.record,
        )

    v3 = polled("pg-order-1", 3)
    assert await adapter.apply_recorded(*application(v3, None))
    assert not await adapter.apply_recorded(*application(v3, None)), "decided again: nothing new"
    # A v2 decided on an empty ledger (a stale snapshot) is refused under the lock.
    assert not await adapter.apply_recorded(*application(polled("pg-order-1", 2), None))
    known = await adapter.applied_document("r", "tradecloud:order:pg-order-1")
    assert known is not None and set(known.parts) == {HEADER, "pg-order-1-1", "pg-order-1-2"}
    await adapter.close()
    conn = await asyncpg.connect(erp_database)
    try:
        row = await conn.fetchrow("SELECT * FROM erp_orders")
        assert row is not None
        assert (row["document_id"], row["version"], row["document_number"]) == (
            "pg-order-1",
            3,
            "PO-rder-1",
        )
        lines = await conn.fetch(
            "SELECT line_key, quantity, version FROM erp_order_lines ORDER BY 1"
        )
        assert [(r["quantity"], r["version"]) for r in lines] == [(3, 3), (3, 3)], (
            "an older version never overwrites newer rows"
        )
        assert await conn.fetchval("SELECT count(*) FROM orderbridge_applied_parts") == 3
    finally:
        await conn.close()


async def test_postgres_adapter_keeps_shipment_lines_that_did_not_change(
    erp_database: str,
) -> None:
    """A buyer's approval re-stamps no line: the header row moves, the lines stay."""
    adapter = PostgresAdapter(erp_database)
    route = make_route({"type": "postgres", "url": erp_database})
    issued = shipment_event(shipment_document("sh-1", minute=1, line_minutes=(1, 1)))
    approved = shipment_event(
        shipment_document("sh-1", minute=2, line_minutes=(1, 1), status="Approved")
    )
    documents = tradecloud.normalize_order_webhook(
        {
            "eventName": "OrderDocumentsAttachedBySupplier",
            "orderDocumentsEvent": {
                "orderId": "pg-docs",
                "version": 4,
                "supplierOrder": {"documents": [{"name": "terms.pdf", "objectId": "obj-1"}]},
            },
        },
        received_at=T0,
    )
    applied: AppliedDocument | None = None
    for event in (issued, approved):
        decision = decide(event, route, delivered=False, applied=applied)
        assert decision.record is not None
        lines = None if len(decision.lines) == 2 else decision.lines
        item = Application("r", event, encode_event(event), decision.header, lines)
        assert await adapter.apply_recorded(item, decision.record)
        applied = await adapter.applied_document("r", decision.record.document)
    conn = await asyncpg.connect(erp_database)
    try:
        row = await conn.fetchrow("SELECT process_status, lines FROM erp_shipments")
        assert row is not None and row["process_status"] == "Approved"
        assert len(orjson.loads(row["lines"])) == 2, "unchanged lines are kept"
        # Reissued with one line: the shipment's current set of lines, not a union.
        reissued = shipment_event(
            shipment_document("sh-1", minute=3, line_minutes=(3,), status="Issued")
        )
        decision = decide(reissued, route, delivered=False, applied=applied)
        assert decision.record is not None
        item = Application("r", reissued, encode_event(reissued), decision.header)
        assert await adapter.apply_recorded(item, decision.record)
        lines = orjson.loads(await conn.fetchval("SELECT lines FROM erp_shipments"))
        assert [line["line_key"] for line in lines] == ["PO-1/1/1/1"]
        # An order-documents event writes its documents, not the order's header row.
        decision = decide(documents, route, delivered=False, applied=None)
        assert decision.record is not None
        item = Application("r", documents, encode_event(documents), decision.header)
        assert await adapter.apply_recorded(item, decision.record)
        assert await conn.fetchval("SELECT count(*) FROM erp_orders") == 0
        row = await conn.fetchrow("SELECT object_id, name, owner FROM erp_order_documents")
        assert row is not None and tuple(row) == ("obj-1", "terms.pdf", "supplier")
    finally:
        await conn.close()
        await adapter.close()


async def test_two_consumer_processes_apply_interleaved_versions_in_order(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    amqp_url: str,
    vhost: str,
    erp_database: str,
    tmp_path: Path,
) -> None:
    route_name = f"two-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "routes.toml"
    config.write_text(f"""
[[routes]]
name = "{route_name}"
bindings = ["tradecloud.order.#"]
shards = 4
retry_delays = [0.5, 1]
[routes.adapter]
type = "postgres"
url = "{erp_database}"
""")
    env = {
        **os.environ,
        "ORDERBRIDGE_AMQP_URL": amqp_url,
        "ORDERBRIDGE_METRICS_PORT": "0",
        "ORDERBRIDGE_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "ORDERBRIDGE_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "services.cli", "consumer", "--config", str(config)]
    processes = [subprocess.Popen(argv, cwd=REPO, env=env) for _ in range(2)]  # noqa: ASYNC220
    try:
        shards = {shard_queue(route_name, shard) for shard in range(4)}
        for _ in range(300):  # both processes subscribed to every shard (one active each)
            rows = await asyncio.to_thread(list_consumers, vhost, "queue_name", "active")
            subscribed = {name: sum(1 for row in rows if row[0] == name) for name in shards}
            if set(subscribed.values()) == {2}:
                break
            await asyncio.sleep(0.2)
        assert set(subscribed.values()) == {2}, f"consumers per shard: {subscribed}"
        assert sum(1 for row in rows if row[0] in shards and row[1] == "true") == 4
        documents = [f"twin-{uuid.uuid4().hex[:8]}" for _ in range(20)]
        events = [polled(doc, version) for doc in documents for version in range(1, 6)]
        random.Random(7).shuffle(events)
        publisher = await RabbitPublisher.open(connection, broker_settings)
        await publisher.publish_many(events)
        await publisher.close()
        conn = await asyncpg.connect(erp_database)
        try:
            for _ in range(600):
                done = await conn.fetchval(
                    "SELECT count(*) FROM erp_orders WHERE version = 5 "
                    "AND document_id = ANY($1::text[])",
                    documents,
                )
                if done == 20:
                    break
                await asyncio.sleep(0.1)
            assert done == 20, f"{done} of 20 orders reached version 5"
            await asyncio.sleep(0.5)  # anything still in flight would be an older version
            lines = await conn.fetch(
                "SELECT version, quantity FROM erp_order_lines WHERE document_id = ANY($1::text[])",
                documents,
            )
            assert len(lines) == 40
            assert {(r["version"], r["quantity"]) for r in lines} == {(5, 5)}
        finally:
            await conn.close()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(30) for process in processes]
    assert codes == [0, 0]


@pytest.mark.skipif(not installed(), reason="rabbitmq-server is not installed here")
async def test_consumption_resumes_after_a_broker_restart(tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="orderbridge-rabbit-", dir="/tmp"))
    node = LocalRabbit(directory, port=5751, name=f"c{uuid.uuid4().hex[:6]}")
    node.start()
    try:
        broker = BrokerSettings(amqp_url=SecretStr(node.url), publish_timeout_seconds=5)
        connection = await connect(broker, name="tests", wait_seconds=20)
        await declare_topology(connection, broker.topology())
        route = make_route({"type": "file", "path": str(tmp_path / "inbox")})
        async with (
            sqlite_state(tmp_path) as state,
            running(route, connection, broker, state) as (runner, metrics),
        ):
            publisher = await RabbitPublisher.open(connection, broker)
            first = [order_event() for _ in range(5)]
            await publisher.publish_many(first)
            await runner.drain(quiet_for=0.3)
            await asyncio.to_thread(node.restart)
            second = [order_event() for _ in range(5)]
            for _ in range(100):  # the robust connection reconnects by itself
                try:
                    await publisher.publish_many(second)
                    break
                except Exception:
                    await asyncio.sleep(0.3)
            for _ in range(150):
                if outcomes(metrics, route.name).get("applied", 0) >= 10:
                    break
                await asyncio.sleep(0.2)
            assert outcomes(metrics, route.name)["applied"] == 10
            assert len(list((tmp_path / "inbox").glob("*.json"))) == 10
            await publisher.close()
        await connection.close()
    finally:
        node.stop()
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------ the order response in full


def full_response(
    version: int = 9,
    *,
    minute: int = 15,
    message: str = "m-9",
    line_minute: int | None = None,
    line_status: dict[str, Any] | None = None,
    buyer_requests: dict[str, Any] | None = None,
    supplier_requests: dict[str, Any] | None = None,
) -> CanonicalEvent:
    """``order-response-full.json`` at ``version`` (stamped 10:<minute>), line-0010's stamp,
    status and requests replaced when given: v9 as committed holds the supplier's open
    proposal in CNY with 18 decimals and the buyer's rejected reopen request."""
    body = fixture("tradecloud/order-response-full.json")
    order = body["orderEvent"]
    order["version"] = version
    order["lastUpdatedAt"] = f"2026-03-02T10:{minute:02d}:00.123"
    body["meta"]["messageId"] = message
    line = order["lines"][0]
    if line_minute is not None:
        line["lastUpdatedAt"] = f"2026-03-02T10:{line_minute:02d}:00.123"
    if line_status is not None:
        line["status"] = line_status
    if buyer_requests is not None:
        line["buyerLine"]["requests"] = buyer_requests
    if supplier_requests is not None:
        line["supplierLine"]["requests"] = supplier_requests
    return tradecloud.normalize_order_webhook(body, received_at=T0)


async def apply_decided(
    adapter: PostgresAdapter, event: CanonicalEvent, applied: AppliedDocument | None
) -> tuple[bool, tuple[str, ...]]:
    """Decide as the route does, apply with the ledger; (applied, the lines that applied)."""
    route = make_route({"type": "postgres", "url": adapter.url})
    decision = decide(event, route, delivered=False, applied=applied)
    assert decision.applies and decision.record is not None, decision
    lines = None if decision.every_item else decision.lines
    item = Application("r", event, encode_event(event), decision.header, lines, decision.change)
    return await adapter.apply_recorded(item, decision.record), decision.lines


async def requests_of(conn: asyncpg.Connection[Any], line: str) -> dict[tuple[str, str], Any]:
    rows = await conn.fetch(
        "SELECT side, kind, status, reason, delivery_schedule, prices, charge_lines, event_id "
        "FROM erp_order_line_requests WHERE line_key = $1",
        line,
    )
    return {(row["side"], row["kind"]): row for row in rows}


async def test_postgres_adapter_writes_the_order_response_in_full(erp_database: str) -> None:
    adapter = PostgresAdapter(erp_database)
    event = full_response()
    assert await apply_decided(adapter, event, None) == (
        True,
        ("line-0010", "line-0010-split", "line-0090"),
    )
    await adapter.close()
    conn = await asyncpg.connect(erp_database)
    try:
        found = await requests_of(conn, "line-0010")
        assert set(found) == {("supplier", "proposal"), ("buyer", "reopen_request")}
        proposal = found["supplier", "proposal"]
        assert (proposal["status"], proposal["reason"]) == ("Open", "capacity")
        schedule = orjson.loads(proposal["delivery_schedule"])
        assert [(e["position"], e["date"]["text"], e["quantity"]) for e in schedule] == [
            ("1", "2026-04-15", "80"),
            ("2", "2026-04-29", "20"),
        ]
        prices = orjson.loads(proposal["prices"])
        assert prices["net"]["transaction"] == {"value": "3.045370369287037036", "currency": "CNY"}
        assert prices["net"]["base"] == {"value": "0.39", "currency": "EUR"}
        assert prices["gross"]["transaction"]["value"] == "3.123456789012345678"
        assert (prices["discount_percentage"], prices["unit_quantity"]) == ("2.5", "100")
        [charge] = orjson.loads(proposal["charge_lines"])
        assert (charge["charge_type_code"], charge["description"], charge["quantity"]) == (
            "ABW",
            "Packing",
            "2",
        )
        assert charge["price"]["transaction"] == {
            "value": "12.500000000000000001",
            "currency": "CNY",
        }
        assert charge["price"]["base"]["value"] == "1.60", "notation kept, as in the event"
        exact = await conn.fetchval(
            "SELECT (prices->'net'->'transaction'->>'value')::numeric FROM erp_order_line_requests"
            " WHERE kind = 'proposal'"
        )
        assert exact == Decimal("3.045370369287037036"), "exact as NUMERIC too"
        reopen = found["buyer", "reopen_request"]
        assert (reopen["status"], reopen["reason"]) == ("Rejected", "Demand increased")
        assert reopen["charge_lines"] is None
        assert await requests_of(conn, "line-0090") == {}

        line = await conn.fetchrow("SELECT * FROM erp_order_lines WHERE line_key = 'line-0010'")
        assert line is not None
        assert (line["process_status"], line["in_progress_status"]) == (
            "InProgress",
            "OpenSupplierProposal",
        )
        assert (line["quantity"], line["net_price"], line["currency"]) == (
            Decimal("100"),
            Decimal("0.4125"),
            "EUR",
        ), "the line's own columns keep the issued values"
        [freight] = orjson.loads(line["charge_lines"])
        assert (freight["charge_type_code"], freight["price"]["transaction"]["value"]) == (
            "FC",
            "25.00",
        )
        issued = orjson.loads(line["issued"])
        assert issued["charge_lines"][0]["price"]["transaction"]["value"] == "25.00"
        confirmed = orjson.loads(line["confirmed"])
        assert confirmed["prices"]["net"]["transaction"]["value"] == "0.4125"
        assert confirmed["charge_lines"][0]["description"] == "Freight"
        buyer, supplier = orjson.loads(line["buyer"]), orjson.loads(line["supplier"])
        assert buyer == {
            "description": "Hex bolt M12x80",
            "properties": [{"key": "drawing", "value": "DWG-1280"}],
            "notes": ["Check thread"],
            "labels": ["bolts"],
            "custom_labels": ["fasteners"],
        }
        assert (supplier["properties"], supplier["notes"]) == (
            [{"key": "plant", "value": "P2"}],
            ["Made to stock"],
        )
        charge_line = await conn.fetchrow(
            "SELECT in_progress_status, charge_lines, confirmed FROM erp_order_lines "
            "WHERE line_key = 'line-0090'"
        )
        assert charge_line is not None
        assert tuple(charge_line) == (None, "[]", None)

        order = await conn.fetchrow("SELECT buyer, supplier, custom_labels FROM erp_orders")
        assert order is not None
        party = orjson.loads(order["buyer"])
        assert (party["properties"], party["notes"], party["labels"], party["custom_labels"]) == (
            [{"key": "costCenter", "value": "4711"}],
            ["Deliver to gate 3"],
            ["urgent"],
            ["Q2-campaign"],
        )
        assert orjson.loads(order["custom_labels"]) == []
        assert orjson.loads(order["supplier"])["properties"] == [
            {"key": "quoteRef", "value": "Q-99"}
        ]

        documents = await conn.fetch(
            "SELECT document_key, line_key, line_id, owner, line_position, object_id, url, name,"
            " code, revision, version FROM erp_order_documents ORDER BY name"
        )
        assert [
            (d["name"], d["line_key"], d["owner"], d["code"], d["revision"]) for d in documents
        ] == [
            ("Certificate 3.1.pdf", "line-0010", "supplier", "CERT-31", "1"),
            ("Drawing.pdf", "line-0010", "buyer", "DWG-1280", "3"),
            ("Order confirmation.pdf", None, "supplier", "OC-7", "1"),
            ("Terms and conditions.pdf", None, "buyer", "TC-1", "2"),
        ]
        assert {d["version"] for d in documents} == {9}
        assert [d["line_id"] for d in documents] == ["line-0010", "line-0010", None, None]
        drawing = documents[1]
        assert drawing["document_key"] == ("doc:buyer:0010:0b7f1a2c-0000-4000-8000-000000000002"), (
            "keyed as order-documents events key it (shared.applied.document_ref_key)"
        )
    finally:
        await conn.close()


async def test_postgres_adapter_replaces_a_lines_requests_only_when_the_line_applies(
    erp_database: str,
) -> None:
    """An answered proposal and a withdrawn request replace the line's requests; an older
    state handed to the adapter without the ledger moves nothing backwards."""
    adapter = PostgresAdapter(erp_database)
    v9 = full_response()
    assert (await apply_decided(adapter, v9, None))[0]
    applied = await adapter.applied_document("r", "tradecloud:order:" + v9.document_id)
    approved = {
        "proposal": {
            "deliverySchedule": [{"position": "1", "date": "2026-04-15", "quantity": 100}],
            "prices": {
                "netPrice": {
                    "priceInTransactionCurrency": {
                        "value": Decimal("3.045370369287037036"),
                        "currencyIso": "CNY",
                    }
                }
            },
            "reason": "capacity",
            "status": "Approved",
        }
    }
    v10 = full_response(
        10,
        minute=20,
        message="m-10",
        line_minute=20,
        line_status={"processStatus": "Confirmed", "logisticsStatus": "Open"},
        buyer_requests={},
        supplier_requests=approved,
    )
    assert await apply_decided(adapter, v10, applied) == (True, ("line-0010",))
    conn = await asyncpg.connect(erp_database)
    try:
        found = await requests_of(conn, "line-0010")
        assert set(found) == {("supplier", "proposal")}, "the withdrawn reopen request is gone"
        proposal = found["supplier", "proposal"]
        assert (proposal["status"], proposal["event_id"]) == ("Approved", v10.event_id)
        assert orjson.loads(proposal["prices"])["net"]["transaction"]["value"] == (
            "3.045370369287037036"
        )
        assert proposal["charge_lines"] is None
        unchanged = await conn.fetchval(
            "SELECT event_id FROM erp_order_lines WHERE line_key = 'line-0090'"
        )
        assert unchanged == v9.event_id, "a line that did not apply keeps its row"
        # v9 again, without the ledger (defence in depth): rows never move backwards.
        await adapter.apply(Application("r", v9, encode_event(v9)))
        found = await requests_of(conn, "line-0010")
        assert set(found) == {("supplier", "proposal")}
        assert found["supplier", "proposal"]["status"] == "Approved"
        line = await conn.fetchrow(
            "SELECT process_status, in_progress_status, event_id FROM erp_order_lines"
            " WHERE line_key = 'line-0010'"
        )
        assert line is not None and tuple(line) == ("Confirmed", None, v10.event_id)
        header_documents = await conn.fetch(
            "SELECT event_id FROM erp_order_documents WHERE line_key IS NULL"
        )
        assert {row["event_id"] for row in header_documents} == {v10.event_id}
        line_documents = await conn.fetch(
            "SELECT event_id FROM erp_order_documents WHERE line_key = 'line-0010'"
        )
        assert {row["event_id"] for row in line_documents} == {v10.event_id}
    finally:
        await conn.close()
        await adapter.close()


async def test_postgres_adapter_adds_the_new_columns_to_an_earlier_database(
    erp_database: str,
) -> None:
    """A database of the release before (no request table, fewer columns) gains them at start."""
    conn = await asyncpg.connect(erp_database)
    try:
        await conn.execute(STAGING)  # the tables as first created, without STAGING_COLUMNS
        await conn.execute("DROP TABLE erp_order_line_requests")
        columns = (
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = $1 AND column_name = $2"
        )
        for table, column, _ in STAGING_COLUMNS:
            assert await conn.fetchval(columns, table, column) == 0, (table, column)
        adapter = PostgresAdapter(erp_database)
        await adapter.start()
        assert (await apply_decided(adapter, full_response(), None))[0]
        await adapter.close()
        assert await conn.fetchval("SELECT count(*) FROM erp_order_line_requests") == 2
        for table, column, _ in STAGING_COLUMNS:
            assert await conn.fetchval(columns, table, column) == 1, (table, column)
        assert (
            await conn.fetchval(
                "SELECT in_progress_status FROM erp_order_lines WHERE line_key = 'line-0010'"
            )
            == "OpenSupplierProposal"
        )
        again = PostgresAdapter(erp_database)  # a second start alters nothing
        await again.start()
        await again.close()
    finally:
        await conn.close()
