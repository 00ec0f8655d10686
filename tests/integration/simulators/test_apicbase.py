"""The Apicbase simulator over real loopback HTTP: OAuth2, the supplier list, marks, webhooks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.ingress.verify import ApicbaseSignature
from services.simulators.apicbase.app import Fault
from services.simulators.apicbase.orders import Query
from services.simulators.apicbase.webhooks import SIGNATURE_HEADER
from shared.normalize.apicbase import normalize_purchase_order
from shared.schema.codec import loads_exact
from tests.support.apicbase_sim import (
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    RunningApicbase,
    running_apicbase,
)

pytestmark = pytest.mark.integration

ORDERS = "/api/v2/integrations/suppliers/purchase_orders/"
REPO = Path(__file__).resolve().parents[3]


async def _token(
    session: aiohttp.ClientSession, apicbase: RunningApicbase, **fields: str
) -> tuple[int, Any]:
    form = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **fields}
    async with session.post(apicbase.url + "/oauth/token/", data=form) as response:
        return response.status, await response.json()


async def _get(
    session: aiohttp.ClientSession, url: str, token: str, **params: str
) -> tuple[int, Any, Mapping[str, str]]:
    async with session.get(
        url, params=params, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, loads_exact(await response.read()), response.headers


async def _patch(
    session: aiohttp.ClientSession, apicbase: RunningApicbase, token: str, body: Any
) -> tuple[int, Any]:
    async with session.patch(
        apicbase.url + ORDERS, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, loads_exact(await response.read())


@pytest.fixture
async def apicbase() -> AsyncIterator[RunningApicbase]:
    async with running_apicbase(seed=4, orders=45) as running:
        yield running


async def test_oauth_grants_rotation_and_client_authentication(apicbase: RunningApicbase) -> None:
    sim = apicbase.simulator
    async with aiohttp.ClientSession() as session:
        status, pair = await _token(
            session, apicbase, grant_type="refresh_token", refresh_token=REFRESH_TOKEN
        )
        assert status == 200
        assert pair["token_type"] == "Bearer" and pair["expires_in"] == 7 * 24 * 3600
        assert pair["refresh_token"] != REFRESH_TOKEN, "rotated"
        status, error = await _token(
            session, apicbase, grant_type="refresh_token", refresh_token=REFRESH_TOKEN
        )
        assert (status, error["error"]) == (400, "invalid_grant"), "the old refresh token is dead"
        assert (await _get(session, apicbase.url + ORDERS, pair["access_token"]))[0] == 200
        status, second = await _token(
            session, apicbase, grant_type="refresh_token", refresh_token=pair["refresh_token"]
        )
        assert status == 200
        assert (await _get(session, apicbase.url + ORDERS, pair["access_token"]))[0] == 401, (
            "a refresh revokes the previous access token"
        )

        code = sim.authorization_code()
        status, by_code = await _token(
            session, apicbase, grant_type="authorization_code", code=code
        )
        assert status == 200 and by_code["access_token"]
        status, error = await _token(session, apicbase, grant_type="authorization_code", code=code)
        assert (status, error["error"]) == (400, "invalid_grant"), "a code works once"

        status, error = await _token(
            session,
            apicbase,
            grant_type="refresh_token",
            refresh_token=second["refresh_token"],
            client_secret="wrong",
        )
        assert (status, error["error"]) == (401, "invalid_client")
        status, error = await _token(session, apicbase, grant_type="client_credentials")
        assert (status, error["error"]) == (400, "unsupported_grant_type")
        # Client credentials through HTTP Basic instead of form fields (RFC 6749 §2.3.1).
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        async with session.post(
            apicbase.url + "/oauth/token/",
            data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
            headers={"Authorization": f"Basic {basic}"},
        ) as response:
            assert response.status == 200
        async with session.post(
            apicbase.url + "/oauth/token/",
            json={"grant_type": "refresh_token", "refresh_token": "x"},
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "invalid_request", "form fields only"


async def test_codes_and_access_tokens_expire_on_the_simulator_clock() -> None:
    now = [1_000_000.0]
    async with running_apicbase(orders=3, access_ttl=3600) as apicbase:
        sim = apicbase.simulator
        sim.clock = lambda: now[0]
        async with aiohttp.ClientSession() as session:
            code = sim.authorization_code()
            now[0] += 61
            status, error = await _token(
                session, apicbase, grant_type="authorization_code", code=code
            )
            assert (status, error["error"]) == (400, "invalid_grant"), "codes live one minute"
            pair = sim.issue_tokens()
            assert (await _get(session, apicbase.url + ORDERS, pair.access_token))[0] == 200
            now[0] += 3601
            status, _, headers = await _get(session, apicbase.url + ORDERS, pair.access_token)
            assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
            status, _ = await _token(
                session, apicbase, grant_type="refresh_token", refresh_token=pair.refresh_token
            )
            assert status == 200, "refresh tokens outlive their access token"


async def test_refresh_tokens_can_be_kept_instead_of_rotated() -> None:
    async with (
        running_apicbase(rotate_refresh_tokens=False) as apicbase,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(2):
            status, pair = await _token(
                session, apicbase, grant_type="refresh_token", refresh_token=REFRESH_TOKEN
            )
            assert status == 200 and pair["refresh_token"] == REFRESH_TOKEN


async def test_list_envelope_paging_and_filters(apicbase: RunningApicbase) -> None:
    token = apicbase.simulator.issue_tokens().access_token
    url = apicbase.url + ORDERS
    async with aiohttp.ClientSession() as session:
        status, page, _ = await _get(session, url, token)
        assert status == 200 and list(page) == ["count", "next", "previous", "results"]
        assert page["count"] == 45 and len(page["results"]) == 10, "default page_size 10"
        assert page["previous"] is None
        stamps = [datetime.fromisoformat(o["ordered_on"]) for o in page["results"]]
        assert stamps == sorted(stamps, reverse=True), "newest first by default"
        item = page["results"][0]
        for flag in ("fetched_by_supplier", "viewed_by_supplier"):
            assert flag in item and f"{flag}_at" in item

        # Follow "next" links to the end: every order once.
        seen: list[str] = []
        link: str | None = url + "?status=ORDERED&page_size=7"
        while link is not None:
            status, page, _ = await _get(session, link, token)
            assert status == 200
            seen += [o["id"] for o in page["results"]]
            link = page["next"]
        assert len(seen) == len(set(seen)) == 30 == page["count"]
        assert page["previous"] is not None

        status, page, _ = await _get(session, url, token, page_size="500")
        assert len(page["results"]) == 45, "page_size above 200 is cut to 200, not refused"
        status, page, _ = await _get(session, url, token, page="9")
        assert (status, page) == (404, {"detail": "Invalid page."})

        status, page, _ = await _get(
            session, url, token, status="ORDERED", fetched_by_supplier="false", page_size="200"
        )
        assert page["count"] == 30
        assert all(not o["fetched_by_supplier"] for o in page["results"])
        status, page, _ = await _get(session, url, token, status="DELIVERED", page_size="200")
        assert page["count"] == 15 and all(o["viewed_by_supplier"] for o in page["results"])

        pivot = apicbase.simulator.book.query(Query(ordering="ordered_on"))[20]
        text = pivot.ordered_on.isoformat()
        status, page, _ = await _get(
            session, url, token, ordered_on__gt=text, page_size="200", ordering="ordered_on"
        )
        after = [datetime.fromisoformat(o["ordered_on"]) for o in page["results"]]
        assert after and all(s > pivot.ordered_on for s in after), "strictly after"
        assert after == sorted(after)

        # An unencoded "+" offset becomes a space and is refused, as django-filter does.
        async with session.get(
            f"{url}?ordered_on__gt={text}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 400
            assert "ordered_on__gt" in await response.json()
        status, errors, _ = await _get(session, url, token, status="IN_PROGRESS")
        assert status == 400 and "status" in errors
        status, errors, _ = await _get(session, url, "not-a-token")
        assert status == 401


async def test_marks_are_irreversible_atomic_and_stamped(apicbase: RunningApicbase) -> None:
    sim = apicbase.simulator
    token = sim.issue_tokens().access_token
    now = [datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp()]
    sim.clock = lambda: now[0]
    ids = [o.id for o in sim.book.orders.values() if o.status == "ORDERED"][:3]
    async with aiohttp.ClientSession() as session:
        status, body = await _patch(
            session, apicbase, token, {"ids": ids, "fetched_by_supplier": True}
        )
        assert status == 200 and body["count"] == 3
        first = body["results"][0]["fetched_by_supplier_at"]
        assert datetime.fromisoformat(first) == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        now[0] += 3600
        status, body = await _patch(
            session,
            apicbase,
            token,
            {"ids": ids[:1], "fetched_by_supplier": True, "viewed_by_supplier": True},
        )
        assert body["results"][0]["fetched_by_supplier_at"] == first, "the first stamp stays"
        assert body["results"][0]["viewed_by_supplier"] is True
        status, errors = await _patch(
            session, apicbase, token, {"ids": ids, "fetched_by_supplier": False}
        )
        assert status == 400 and "fetched_by_supplier" in errors, "cannot be set back"
        cart = sim.book.add(sim.now())
        untouched = [o.id for o in sim.book.orders.values() if o.fetched_at is None][:2]
        status, errors = await _patch(
            session,
            apicbase,
            token,
            {"ids": [*untouched, "no-such-order", cart.id], "fetched_by_supplier": True},
        )
        assert status == 400 and len(errors["ids"]) == 2
        assert all(sim.book.orders[i].fetched_at is None for i in untouched), "all or nothing"
        status, errors = await _patch(session, apicbase, token, {"ids": ids})
        assert status == 400, "at least one flag"
        status, page, _ = await _get(
            session, apicbase.url + ORDERS, token, fetched_by_supplier="true", status="ORDERED"
        )
        assert {o["id"] for o in page["results"]} == set(ids)


async def test_throttle_is_a_sliding_window_per_client_after_authentication() -> None:
    async with (
        running_apicbase(orders=2, rate_limit=5, rate_window=60) as apicbase,
        aiohttp.ClientSession() as session,
    ):
        sim = apicbase.simulator
        token = sim.issue_tokens().access_token
        statuses = [(await _get(session, apicbase.url + ORDERS, token))[0] for _ in range(5)]
        assert statuses == [200] * 5
        status, body, headers = await _get(session, apicbase.url + ORDERS, token)
        assert status == 429 and 55 <= int(headers["Retry-After"]) <= 60
        assert "throttled" in body["detail"]
        assert (await _get(session, apicbase.url + ORDERS, "bad"))[0] == 401, "401 before 429"
        status, _ = await _token(
            session, apicbase, grant_type="refresh_token", refresh_token=REFRESH_TOKEN
        )
        assert status == 200, "the token endpoint is not throttled"
        assert sim.throttled == 1 and sim.busiest_window() == 5


async def test_injected_faults_statuses_delays_and_resets(apicbase: RunningApicbase) -> None:
    sim = apicbase.simulator
    token = sim.issue_tokens().access_token
    sim.inject(Fault("status", status=502, count=1))
    sim.inject(Fault("status", status=429, retry_after=3, count=1))
    async with aiohttp.ClientSession() as session:
        assert (await _get(session, apicbase.url + ORDERS, token))[0] == 502
        status, _, headers = await _get(session, apicbase.url + ORDERS, token)
        assert status == 429 and headers["Retry-After"] == "3"
        assert (await _get(session, apicbase.url + ORDERS, token))[0] == 200
        sim.inject(Fault("delay", seconds=0.3))
        started = time.monotonic()
        assert (await _get(session, apicbase.url + ORDERS, token))[0] == 200
        assert time.monotonic() - started >= 0.3
        # aiohttp re-sends an idempotent request once when the connection drops: reset twice.
        sim.inject(Fault("reset", count=2))
        before = sim.requests
        with pytest.raises(aiohttp.ClientError):
            await _get(session, apicbase.url + ORDERS, token)
        assert sim.requests == before + 2
        sim.inject(Fault("status", path="/oauth/", status=503))
        status, _ = await _token(
            session, apicbase, grant_type="refresh_token", refresh_token=REFRESH_TOKEN
        )
        assert status == 503


@dataclass
class Receiver:
    """A supplier endpoint: records what arrives, answers from a script."""

    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.answers.pop(0) if self.answers else 200
        return web.json_response({"answer": f"status {status}"}, status=status)


@contextlib.asynccontextmanager
async def _receiver(**kwargs: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(**kwargs)
    app = web.Application()
    app.router.add_post("/orders", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/orders"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def test_webhooks_are_signed_in_both_forms_and_match_the_api_copy() -> None:
    check = ApicbaseSignature.of([CLIENT_SECRET.encode()])
    async with running_apicbase() as apicbase, _receiver() as receiver:
        sim = apicbase.simulator
        sim.configure_webhook(receiver.url)
        compact = await sim.place_orders(3)
        pretty = await sim.place_orders(3, pretty=True)
        assert [d.state for d in compact + pretty] == ["sent"] * 6
        assert [d.form for d in compact + pretty] == ["compact"] * 3 + ["pretty"] * 3
        forms = []
        for body, headers in receiver.received:
            assert headers["Content-Type"] == "application/json"
            signature = headers[SIGNATURE_HEADER]
            assert signature == signature.lower() and len(signature) == 64
            forms.append(check.check(body, signature))
        assert forms == ["raw"] * 3 + ["reserialized"] * 3
        assert all(b.isascii() for b, _ in receiver.received[:3])
        assert any(not b.isascii() for b, _ in receiver.received[3:]), "raw UTF-8 bytes"

        # Sent orders are ORDERED and listed; both copies share the idempotency key.
        token = sim.issue_tokens().access_token
        async with aiohttp.ClientSession() as session:
            _, page, _ = await _get(session, apicbase.url + ORDERS, token, page_size="200")
        listed = {o["id"]: o for o in page["results"]}
        received_at = datetime(2026, 1, 1, tzinfo=UTC)
        for body, _ in receiver.received:
            pushed = loads_exact(body)
            api_copy = listed[pushed["id"]]
            assert api_copy["fetched_by_supplier"] is False
            by_webhook = normalize_purchase_order(
                pushed, received_at=received_at, channel="webhook"
            )
            by_api = normalize_purchase_order(api_copy, received_at=received_at, channel="api")
            assert by_webhook.idempotency_key == by_api.idempotency_key


async def test_a_refused_push_is_never_retried_and_leaves_the_order_unsent() -> None:
    async with (
        running_apicbase() as apicbase,
        _receiver(answers=[503, 422, 200]) as receiver,
    ):
        sim = apicbase.simulator
        sim.configure_webhook(receiver.url)
        [failed] = await sim.place_orders(1)
        assert len(receiver.received) == 1, "one attempt only, even after a 503"
        assert failed.state == "not_sent" and failed.status == 503
        assert failed.response_body == '{"answer": "status 503"}'
        order = sim.order(failed.order_id)
        assert order.status == "IN_PROGRESS"
        token = sim.issue_tokens().access_token
        async with aiohttp.ClientSession() as session:
            _, page, _ = await _get(session, apicbase.url + ORDERS, token)
            assert page["count"] == 0, "an unsent order is not the supplier's yet"
            # The customer places it again by hand: a 4xx refuses it again.
            async with session.post(
                f"{apicbase.url}/_control/orders/{order.id}/push", json={}
            ) as response:
                again = await response.json()
            assert again["state"] == "not_sent" and again["status"] == 422
            async with session.post(f"{apicbase.url}/_control/orders/{order.id}/push") as response:
                assert (await response.json())["state"] == "sent"
            async with session.post(f"{apicbase.url}/_control/orders/{order.id}/push") as response:
                assert response.status == 409, "an order is placed once"
            async with session.get(f"{apicbase.url}/_control/orders/{order.id}") as response:
                state = await response.json()
            assert state["state"] == "ORDERED" and state["sent"] is True
            assert [d["status"] for d in state["deliveries"]] == [503, 422, 200]
            _, page, _ = await _get(session, apicbase.url + ORDERS, token)
            assert [o["id"] for o in page["results"]] == [order.id]
        assert len(receiver.received) == 3


async def test_a_slow_or_absent_endpoint_fails_the_push_without_retry() -> None:
    async with running_apicbase() as apicbase, _receiver(delay=1.0) as receiver:
        sim = apicbase.simulator
        sim.configure_webhook(receiver.url, timeout=0.2)
        [slow] = await sim.place_orders(1)
        assert slow.state == "not_sent" and slow.status is None
        assert slow.error is not None and "Timeout" in slow.error
        assert len(receiver.received) == 1
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        sim.configure_webhook(f"http://127.0.0.1:{closed}/orders")
        [refused] = await sim.place_orders(1)
        assert refused.state == "not_sent" and refused.error
        assert len(sim.deliveries) == 2


async def test_control_routes(apicbase: RunningApicbase) -> None:
    async with _receiver(answers=[200, 500]) as receiver, aiohttp.ClientSession() as session:
        base = apicbase.url + "/_control"

        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with session.request(method, base + path, json=body) as response:
                return response.status, await response.json(content_type=None)

        status, created = await call("POST", "/orders", {"count": 2, "lines": 3})
        assert status == 201 and len(created["order_ids"]) == 2
        status, _ = await call("POST", "/orders", {"via": "webhook"})
        assert status == 409, "no webhook configured yet"
        assert (await call("POST", "/webhook", {"url": receiver.url, "pretty": True}))[0] == 200
        status, pushed = await call("POST", "/orders", {"via": "webhook", "count": 2})
        assert [d["state"] for d in pushed["deliveries"]] == ["sent", "not_sent"]
        assert [d["form"] for d in pushed["deliveries"]] == ["pretty", "pretty"]
        status, order = await call("GET", f"/orders/{created['order_ids'][0]}")
        assert len(order["order"]["packages"]) == 3 and order["state"] == "ORDERED"
        status, delivered = await call("POST", f"/orders/{created['order_ids'][0]}/deliver")
        assert delivered["status"] == "DELIVERED"
        assert (await call("GET", "/orders/nope"))[0] == 404
        status, deliveries = await call("GET", "/deliveries")
        assert [d["status"] for d in deliveries] == [200, 500]
        status, state = await call("GET", "/state")
        assert state["orders"] == 45 + 4 and state["by_status"]["IN_PROGRESS"] == 1
        status, pair = await call("POST", "/tokens")
        assert status == 201 and pair["access_token"] and pair["refresh_token"]
        assert (await call("POST", "/tokens/expire"))[0] == 200
        status, _, _ = await _get(session, apicbase.url + ORDERS, pair["access_token"])
        assert status == 401
        status, code = await call("POST", "/authorization-codes")
        assert status == 201 and code["expires_in"] == 60
        status, faults = await call("POST", "/faults", {"kind": "status", "status": 500})
        assert faults == {"faults": 1}
        assert (await call("POST", "/faults", {"kind": "weird"}))[0] == 400
        assert (await call("DELETE", "/faults"))[1] == {"faults": 0}


async def test_drive_creates_orders_for_both_routes(apicbase: RunningApicbase) -> None:
    async with _receiver() as receiver:
        sim = apicbase.simulator
        sim.configure_webhook(receiver.url)
        before = len(sim.book.orders)
        stop = asyncio.Event()
        driver = asyncio.create_task(sim.drive(0.001, webhook_share=0.5, stop=stop))
        while len(sim.book.orders) < before + 30:
            await asyncio.sleep(0.01)
        stop.set()
        await driver
        new = list(sim.book.orders.values())[before:]
        pushed = {d.order_id for d in sim.deliveries}
        assert pushed and len(pushed) < len(new), "a share by webhook, the rest for the API"
        assert all(o.status == "ORDERED" for o in new)
        assert len(receiver.received) == len(pushed)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_simulate_apicbase_command_serves_the_api() -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "simulate",
        "apicbase",
        "--port",
        str(port),
        "--orders",
        "12",
        "--seed",
        "3",
        "--client-id",
        "cli-client",
        "--client-secret",
        "cli-secret",
        "--refresh-token",
        "cli-refresh",
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/_control/state") as response:
                        state = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    assert process.returncode is None, "the simulator exited"
                    assert time.monotonic() < deadline, "the simulator did not start"
                    await asyncio.sleep(0.1)
            assert state["orders"] == 12
            async with session.post(
                f"http://127.0.0.1:{port}/oauth/token/",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": "cli-refresh",
                    "client_id": "cli-client",
                    "client_secret": "cli-secret",
                },
            ) as response:
                assert response.status == 200
                token = (await response.json())["access_token"]
            async with session.get(
                f"http://127.0.0.1:{port}{ORDERS}", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert (await response.json())["count"] == 12
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0, "SIGTERM stops it cleanly"
