"""The whole pipeline as separate processes against the real RabbitMQ and PostgreSQL.

Both simulators run in **documented-behaviour mode** (``--documented``): header-only
changes that re-stamp no line, several messages at one version, changes we are not
subscribed to (a polled order then carries an old messageId), zone-less stamps,
shipment status changes that re-stamp no line, webhooks delivered in parallel and out
of order, polls without ``total``; Apicbase webhook and API copies formatted
differently, orders placed again with the same id. Ingress, poller, apicbase-fetcher
and three consumer routes (one process each) run as ``orderbridge`` subprocesses.

The scenario: 1,000 Tradecloud orders through their lifecycles, delivered by webhook
*and* by polling at once, including the supplier's own open requests (echoes: we
integrate as the supplier); a flaky hop in front of ingress answers 503 to some first
deliveries, which the simulator retries; 50 Apicbase orders, half by signed webhook,
half only through the API. Mid-run the consumers and the poller are killed with
SIGKILL and restarted.

Then, checked against the simulators' own final documents (not against what the
pipeline published): for every order and shipment the ERP's state, folded from its
inbox as an import job would, equals the platform's document in every normalized field
(the ``mirror`` route applies echoes too); no header or line state reached an inbox
twice; the ``orders`` route never delivered an echo line; nothing dead-lettered or
quarantined; every Apicbase order is one ERP order equal to the platform's and marked
fetched. Last, an order with the issue's proposal (another date and quantity, a price in
CNY with 18 decimals, reason "capacity", charge lines) made in the simulator is in the
purchasing route's ERP file (a route filtering open supplier proposals) exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from services.simulators.serving import serving
from shared.clients.tradecloud import TradecloudClient, TradecloudSettings
from shared.normalize.apicbase import normalize_purchase_order
from shared.normalize.tradecloud import normalize_polled_order, normalize_polled_shipment
from shared.schema.codec import decode_event, loads_exact
from shared.schema.models import CanonicalEvent
from tests.support.mirror import applied_twice, differences, fold, lines_of
from tests.support.postgres import private_database
from tests.support.pulling import start_service
from tests.support.rabbit import list_queues

pytestmark = pytest.mark.timeout(600)
ORDERS = 1_000

TC_USER, TC_PASSWORD = "integration@supplier.example", "tc-api-password"
HOOK_USER, HOOK_PASSWORD = "tradecloud", "hook-password"
APIC_SECRET, APIC_REFRESH = "e2e-apicbase-secret", "e2e-refresh"
START = "2020-01-01T00:00:00.000Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Services:
    """The orderbridge processes of the scenario, restartable by name."""

    def __init__(self, envs: dict[str, tuple[list[str], dict[str, str]]]) -> None:
        self.envs = envs
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.logs: dict[str, list[str]] = {name: [] for name in envs}
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, name: str) -> None:
        args, env = self.envs[name]
        process = await start_service(args[0], *args[1:], env=env)
        self.processes[name] = process
        self._readers.append(asyncio.ensure_future(self._read(name, process)))

    async def _read(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            self.logs[name].append(line.decode(errors="replace"))

    async def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        await process.wait()

    def alive(self) -> None:
        for name, process in self.processes.items():
            assert process.returncode is None, f"{name} died: {''.join(self.logs[name][-30:])}"

    async def stop_all(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
                raise AssertionError(f"{name} did not stop on SIGTERM") from None
        for reader in self._readers:
            reader.cancel()


async def flaky_hop(target: str) -> AsyncIterator[str]:
    """Forwards webhooks to ingress; the first delivery of every 25th body gets 503.

    The simulator delivers in order per endpoint and waits 0.5 s before a retry, as
    Tradecloud does, so a higher share would mostly measure that wait.
    """
    seen: set[str] = set()
    count = 0
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        nonlocal count
        body = await request.read()
        digest = hashlib.sha256(body).hexdigest()
        count += 1
        if digest not in seen and count % 25 == 0:
            seen.add(digest)
            return web.json_response({"error": "flaky"}, status=503)
        seen.add(digest)
        async with session.request(
            request.method,
            target + request.path_qs,
            data=body,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as answer:
            return web.Response(body=await answer.read(), status=answer.status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    try:
        async with serving(app, "127.0.0.1", 0) as url:
            yield url
    finally:
        await session.close()


async def wait_for(what: str, check: Any, within: float, services: Services) -> None:
    deadline = time.monotonic() + within
    while True:
        services.alive()
        result = await check()
        if result is True:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s: {result}")
        await asyncio.sleep(0.5)


def applied(inbox: Path) -> list[CanonicalEvent]:
    return [decode_event(path.read_bytes()) for path in sorted(inbox.rglob("*.json"))]


async def current_orders(url: str) -> list[Any]:
    settings = TradecloudSettings(
        tradecloud_api_url=url,
        tradecloud_username=TC_USER,
        tradecloud_password=SecretStr(TC_PASSWORD),
    )
    documents: list[Any] = []
    async with TradecloudClient(settings) as client:
        while True:
            page = await client.poll_orders(START, offset=len(documents))
            documents += page.data
            if page.exhausted:
                return documents


async def test_the_whole_pipeline_survives_overlap_echoes_retries_and_kill_9(
    tmp_path: Path, amqp_url: str, vhost: str
) -> None:
    tc_port, ab_port, ingress_port = free_port(), free_port(), free_port()
    suffix = uuid.uuid4().hex[:6]
    inbox = tmp_path / "inbox"
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f"""
[[routes]]
name = "e2e-orders-{suffix}"
bindings = ["tradecloud.order.#", "apicbase.order.#"]
shards = 2
retry_delays = [1, 2]
[routes.adapter]
type = "file"
path = "{inbox / "orders"}"

[[routes]]
name = "e2e-mirror-{suffix}"
bindings = ["tradecloud.order.#", "tradecloud.order_documents.#"]
shards = 2
retry_delays = [1, 2]
skip_echo = false
[routes.adapter]
type = "file"
path = "{inbox / "mirror"}"

[[routes]]
name = "e2e-purchasing-{suffix}"
bindings = ["tradecloud.order.#"]
shards = 1
retry_delays = [1, 2]
skip_echo = false
[routes.filter]
request_sides = ["supplier"]
request_kinds = ["proposal"]
request_statuses = ["Open"]
[routes.adapter]
type = "file"
path = "{inbox / "purchasing"}"

[[routes]]
name = "e2e-shipments-{suffix}"
bindings = ["tradecloud.shipment.#"]
shards = 1
retry_delays = [1, 2]
[routes.adapter]
type = "file"
path = "{inbox / "shipments"}"
"""
    )
    tc_url = f"http://127.0.0.1:{tc_port}"
    ab_url = f"http://127.0.0.1:{ab_port}"
    ingress = f"http://127.0.0.1:{ingress_port}"

    async with private_database("orderbridge_e2e") as database:
        common = {
            "ORDERBRIDGE_AMQP_URL": amqp_url,
            "ORDERBRIDGE_STATE_URL": database,
            "ORDERBRIDGE_TRADECLOUD_ROLE": "supplier",
            "ORDERBRIDGE_ECHO_POLICY": "own-open-requests",
            "ORDERBRIDGE_TRADECLOUD_API_URL": f"{tc_url}/v2",
            "ORDERBRIDGE_TRADECLOUD_USERNAME": TC_USER,
            "ORDERBRIDGE_TRADECLOUD_PASSWORD": TC_PASSWORD,
            "ORDERBRIDGE_METRICS_PORT": "0",
        }
        async with serving_flaky(ingress) as hop:
            services = Services(
                {
                    "tradecloud-sim": (
                        [
                            "simulate",
                            "tradecloud",
                            "--port",
                            str(tc_port),
                            "--orders",
                            "0",
                            "--documented",
                            "--username",
                            TC_USER,
                            "--password",
                            TC_PASSWORD,
                            "--webhook-orders-url",
                            f"{hop}/webhooks/tradecloud/orders",
                            "--webhook-documents-url",
                            f"{hop}/webhooks/tradecloud/orders",
                            "--webhook-shipments-url",
                            f"{hop}/webhooks/tradecloud/shipments",
                            "--webhook-username",
                            HOOK_USER,
                            "--webhook-password",
                            HOOK_PASSWORD,
                            "--webhook-max-backoff",
                            "1",
                        ],
                        {},
                    ),
                    "apicbase-sim": (
                        [
                            "simulate",
                            "apicbase",
                            "--port",
                            str(ab_port),
                            "--orders",
                            "0",
                            "--documented",
                            "--client-secret",
                            APIC_SECRET,
                            "--refresh-token",
                            APIC_REFRESH,
                            "--webhook-url",
                            f"{ingress}/webhooks/apicbase/orders",
                        ],
                        {},
                    ),
                    "ingress": (
                        ["ingress", "--port", str(ingress_port)],
                        common
                        | {
                            "ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME": HOOK_USER,
                            "ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD": HOOK_PASSWORD,
                            "ORDERBRIDGE_APICBASE_WEBHOOK_SECRET": APIC_SECRET,
                        },
                    ),
                    "poller": (
                        ["poller"],
                        common
                        | {
                            "ORDERBRIDGE_POLL_START": START,
                            "ORDERBRIDGE_POLL_INTERVAL_SECONDS": "1",
                            "ORDERBRIDGE_POLL_LEASE_SECONDS": "3",
                        },
                    ),
                    "fetcher": (
                        ["apicbase-fetcher"],
                        common
                        | {
                            "ORDERBRIDGE_APICBASE_API_URL": ab_url,
                            "ORDERBRIDGE_APICBASE_CLIENT_ID": "orderbridge",
                            "ORDERBRIDGE_APICBASE_CLIENT_SECRET": APIC_SECRET,
                            "ORDERBRIDGE_APICBASE_REFRESH_TOKEN": APIC_REFRESH,
                            "ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS": "1",
                            "ORDERBRIDGE_APICBASE_FETCH_LEASE_SECONDS": "3",
                        },
                    ),
                    "orders-consumer": (
                        ["consumer", "--route", f"e2e-orders-{suffix}"],
                        common | {"ORDERBRIDGE_CONSUMER_CONFIG": str(routes)},
                    ),
                    "mirror-consumer": (
                        ["consumer", "--route", f"e2e-mirror-{suffix}"],
                        common | {"ORDERBRIDGE_CONSUMER_CONFIG": str(routes)},
                    ),
                    "shipments-consumer": (
                        ["consumer", "--route", f"e2e-shipments-{suffix}"],
                        common | {"ORDERBRIDGE_CONSUMER_CONFIG": str(routes)},
                    ),
                    "purchasing-consumer": (
                        ["consumer", "--route", f"e2e-purchasing-{suffix}"],
                        common | {"ORDERBRIDGE_CONSUMER_CONFIG": str(routes)},
                    ),
                }
            )
            try:
                for name in services.envs:
                    await services.start(name)
                async with aiohttp.ClientSession() as http:
                    proposal = await run_scenario(http, services, tc_url, ab_url, ingress, vhost)
                    await wait_until_settled(http, services, tc_url, ab_url, vhost, inbox)
                    await check_outcome(http, tc_url, ab_url, inbox, vhost, suffix)
                    await check_proposal(http, tc_url, inbox, proposal)
            finally:
                await services.stop_all()


serving_flaky = asynccontextmanager(flaky_hop)


async def ready(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as answer:
            return answer.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with http.post(url, json=body) as answer:
        assert answer.status < 300, await answer.text()
        return await answer.json()


async def run_scenario(
    http: aiohttp.ClientSession,
    services: Services,
    tc_url: str,
    ab_url: str,
    ingress: str,
    vhost: str,
) -> str:
    """Runs the lifecycle; returns the id of the order with the issue's proposal (last)."""
    for url in (f"{tc_url}/_control/state", f"{ab_url}/_control/state", f"{ingress}/readyz"):
        await wait_for(url, lambda url=url: ready(http, url), 60, services)
    await post(http, f"{tc_url}/_control/orders", {"count": ORDERS})
    await post(http, f"{ab_url}/_control/orders", {"count": 25, "via": "webhook"})
    await post(http, f"{ab_url}/_control/orders", {"count": 25, "via": "api"})
    for round_ in range(10):
        await post(http, f"{tc_url}/_control/advance", {"count": 250})
        await asyncio.sleep(0.4)
        if round_ == 4:  # mid-run: the consumers and the poller die hard
            for name in ("orders-consumer", "mirror-consumer", "poller"):
                await services.kill(name)
            await asyncio.sleep(1)
            for name in ("orders-consumer", "mirror-consumer", "poller"):
                await services.start(name)
    # The order response the issue tried: another date and quantity, a price in CNY with
    # 18 decimals, reason "capacity", charge lines, no pricesIncludingRequests.
    created = await post(http, f"{tc_url}/_control/orders", {"count": 1, "proposal": PROPOSAL})
    return str(created["order_ids"][0])


PROPOSAL: Final = {
    "reason": "capacity",
    "currency": "CNY",
    "decimals": 18,
    "days": 21,
    "quantity": "37",
    "charge_lines": 2,
    "prices_including_requests": False,
}


async def check_proposal(
    http: aiohttp.ClientSession, tc_url: str, inbox: Path, order_id: str
) -> None:
    """The proposal made in the simulator is in the purchasing route's ERP file, exact to
    the last digit: read as an import job reads it (the file's JSON text)."""
    async with http.get(f"{tc_url}/_control/orders/{order_id}") as answer:
        document = loads_exact(await answer.read())["order"]
    (line,) = [
        line
        for line in document["lines"]
        if ((line.get("supplierLine") or {}).get("requests") or {}).get("proposal")
    ]
    assert "pricesIncludingRequests" not in line, "the issue's case: no prices incl. requests"
    sent = line["supplierLine"]["requests"]["proposal"]
    files = [
        json.loads(path.read_bytes())
        for path in sorted((inbox / "purchasing").glob("*.json"))
        if order_id in path.read_text()
    ]
    requests = [
        request
        for erp in files
        for erp_line in erp["order"]["lines"]
        if erp_line["line_id"] == line["id"]
        for request in erp_line["requests"]
        if request["kind"] == "proposal"
    ]
    assert requests, "the open proposal reached the purchasing route's ERP file"
    got = requests[-1]
    assert (got["side"], got["status"], got["reason"]) == ("supplier", "Open", "capacity")
    assert sent["reason"] == "capacity"
    # Values compare exactly as decimals (a float would lose digits); the platform may
    # write one value as 37 in a webhook and 37.000000 in a poll, both the same number.
    assert [(e["date"]["text"], Decimal(e["quantity"])) for e in got["delivery_schedule"]] == [
        (e["date"], e["quantity"]) for e in sent["deliverySchedule"]
    ]
    net = sent["prices"]["netPrice"]["priceInTransactionCurrency"]
    got_net = got["prices"]["net"]["transaction"]
    assert (Decimal(got_net["value"]), got_net["currency"]) == (net["value"], "CNY")
    assert len(got_net["value"].split(".")[1]) == 18, "18 decimals, every one kept"
    assert [
        (
            c["charge_type_code"],
            c["description"],
            Decimal(c["quantity"]),
            Decimal(c["price"]["transaction"]["value"]),
        )
        for c in got["charge_lines"]
    ] == [
        (
            c["chargeTypeCode"],
            c["chargeDescription"],
            c["quantity"],
            c["price"]["priceInTransactionCurrency"]["value"],
        )
        for c in sent["chargeLines"]
    ]
    assert sent["chargeLines"], "the proposal carries charge lines"


async def wait_until_settled(
    http: aiohttp.ClientSession,
    services: Services,
    tc_url: str,
    ab_url: str,
    vhost: str,
    inbox: Path,
) -> None:
    async def webhooks_delivered() -> bool | str:
        async with http.get(f"{tc_url}/_control/state") as answer:
            state = await answer.json()
        by_state = state["deliveries_by_state"]
        return True if by_state["pending"] == 0 and by_state["delivered"] > 0 else str(by_state)

    async def apicbase_fetched() -> bool | str:
        async with http.get(f"{ab_url}/_control/state") as answer:
            state = await answer.json()
        settled = state["fetched"] == 50 and state["awaiting_replace"] == 0
        return True if settled else str(state)

    async def settled() -> bool | str:
        """The ERP mirrors the platform and nothing is in flight (a state we can read:
        queue depths count unacknowledged messages, and acks follow the effects)."""
        wrong = await mirror_differences(http, tc_url, inbox)
        busy = [
            row
            for row in list_queues(vhost, "name", "messages")
            if row[0].startswith("orderbridge.route.e2e")
            and row[1] != "0"
            and not row[0].endswith("dead-letter")
        ]
        if not busy and not any(wrong.values()):
            return True
        return f"in flight {busy}; differing {[(k, len(v)) for k, v in wrong.items()]}"

    started = time.monotonic()
    await wait_for("webhooks delivered", webhooks_delivered, 120, services)
    print(f"webhooks delivered after {time.monotonic() - started:.1f}s")
    await wait_for("apicbase orders fetched", apicbase_fetched, 60, services)
    print(f"apicbase fetched after {time.monotonic() - started:.1f}s")
    await wait_for("the ERP mirrors the platform", settled, 180, services)
    print(f"settled after {time.monotonic() - started:.1f}s")


async def mirror_differences(
    http: aiohttp.ClientSession, tc_url: str, inbox: Path
) -> dict[str, dict[str, list[str]]]:
    """Per kind, the documents whose ERP state (the mirror route's and the shipments
    route's inbox, folded) differs from the simulator's own final document."""
    async with http.get(f"{tc_url}/_control/documents") as answer:
        truth = loads_exact(await answer.read())
    erp = fold(applied(inbox / "mirror")) | fold(applied(inbox / "shipments"))
    orders = [
        normalize_polled_order(document, received_at=NOW, role="supplier", echo_policy=ECHO)
        for document in truth["orders"].values()
    ]
    shipments = [
        normalize_polled_shipment(document, received_at=NOW)
        for document in truth["shipments"].values()
    ]
    return {
        kind: {
            event.document_id: found
            for event in events
            if (found := differences(erp.get(f"tradecloud:{kind}:{event.document_id}"), event))
        }
        for kind, events in (("order", orders), ("shipment", shipments))
    }


async def check_outcome(
    http: aiohttp.ClientSession, tc_url: str, ab_url: str, inbox: Path, vhost: str, suffix: str
) -> None:
    async with http.get(f"{tc_url}/_control/documents") as answer:
        truth = loads_exact(await answer.read())
    mirror = applied(inbox / "mirror")
    orders_route = applied(inbox / "orders")
    shipments = applied(inbox / "shipments")

    for name, events in (("mirror", mirror), ("orders", orders_route), ("shipments", shipments)):
        assert applied_twice(events) == [], f"a change reached the {name} inbox twice"

    assert len(truth["orders"]) == ORDERS + 1 - len(truth["deleted_orders"]), "+ the proposal"
    assert truth["shipments"], "the lifecycle ships orders"
    wrong = await mirror_differences(http, tc_url, inbox)
    for kind, documents in wrong.items():
        assert documents == {}, f"{len(documents)} {kind}s differ: {list(documents.items())[:5]}"
    order_truth = [
        normalize_polled_order(document, received_at=NOW, role="supplier", echo_policy=ECHO)
        for document in truth["orders"].values()
    ]

    attached = {
        (event.document_id, key)
        for event in mirror
        if event.kind == "order_documents"
        for key in lines_of(event)
    }
    on_platform = {
        (order_id, str(document["objectId"]))
        for order_id, order in truth["orders"].items()
        for document in documents_of(order)
    }
    assert on_platform, "the lifecycle attaches documents"
    assert on_platform <= attached, f"attachments missing: {sorted(on_platform - attached)[:5]}"
    echo_lines = [
        (event.document_id, line.line_id)
        for event in orders_route
        if event.source == "tradecloud" and event.order is not None
        for line in event.order.lines
        if line.echo
    ]
    assert echo_lines == [], "the orders route delivered our own open requests back"
    echoing = sum(any(line.echo for line in e.order.lines) for e in order_truth if e.order)
    assert echoing > 0, "the scenario should leave some of our own proposals open (echoes)"
    channels = Counter(e.channel for e in mirror)
    print(
        f"applied: mirror {len(mirror)}, orders {len(orders_route)}, shipments "
        f"{len(shipments)} files; channels {dict(channels)}; {echoing} orders echoing"
    )
    assert channels["webhook"] > 0 and channels["poll"] > 0  # both paths delivered

    async with http.get(f"{ab_url}/_control/orders") as answer:
        book = loads_exact(await answer.read())["orders"]
    placed = [order["api"] for order in book if order["api"] is not None]
    assert len(placed) == 50, "every order placed (again, where a push failed)"
    erp_apicbase = fold(e for e in orders_route if e.source == "apicbase")
    assert len(erp_apicbase) == 50, "one ERP order per Apicbase order, whatever the copies"
    apicbase_wrong = {
        str(document["id"]): found
        for document in placed
        if (
            found := differences(
                erp_apicbase.get(f"apicbase:order:{document['id']}"),
                normalize_purchase_order(document, received_at=NOW, channel="api"),
            )
        )
    }
    assert apicbase_wrong == {}, f"Apicbase orders differ: {list(apicbase_wrong.items())[:5]}"
    replaced = sum(len(order["pushes"]) > 1 for order in book)
    async with http.get(f"{ab_url}/_control/state") as answer:
        state = await answer.json()
    assert state["fetched"] == 50 and state["viewed"] == 0
    print(f"apicbase: {replaced} orders pushed more than once")

    queues = {row[0]: int(row[1]) for row in list_queues(vhost, "name", "messages")}
    for route in ("orders", "mirror", "shipments"):
        assert queues[f"orderbridge.route.e2e-{route}-{suffix}.dead-letter"] == 0
    assert queues.get("orderbridge.invalid", 0) == 0


def documents_of(order: Any) -> list[Any]:
    """Every document attached to a Tradecloud order: order level and line level, both sides."""
    found = [
        *order["buyerOrder"].get("documents", []),
        *order["supplierOrder"].get("documents", []),
    ]
    for line in order["lines"]:
        found += line.get("buyerLine", {}).get("documents", [])
        found += line.get("supplierLine", {}).get("documents", [])
    return found


NOW = datetime(2026, 6, 1, tzinfo=UTC)
ECHO: Final = "own-open-requests"
