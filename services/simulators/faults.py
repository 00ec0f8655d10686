"""Faults on demand for the Tradecloud simulator: what a flaky upstream does to a client.

A ``Fault`` applies to the next ``count`` API requests whose path starts with
``path``. The kinds are what real platforms do to integrations:

* ``status``: answer ``status`` at once (429 with ``Retry-After`` when
  ``retry_after`` is set, 5xx for an outage);
* ``delay``: sleep ``seconds`` before answering normally (a slow platform: with
  6 s the answer arrives after Tradecloud's documented 5 s timeout);
* ``reset``: abort the TCP connection without an answer;
* ``expire_tokens``: every access token issued so far expires now (the
  request then fails with 401 unless the client renews its token).

Faults are consumed in the order they were injected; one request consumes at
most one fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from aiohttp import web

from services.simulators.serving import problem, read_object, reply

FaultKind = Literal["status", "delay", "reset", "expire_tokens"]
FAULT_KINDS: Final = frozenset(get_args(FaultKind))


@dataclass
class Fault:
    """Applied to the next ``count`` API requests whose path starts with ``path``."""

    kind: FaultKind
    path: str = "/"
    count: int = 1
    status: int = 503
    retry_after: float | None = None
    seconds: float = 6.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {sorted(FAULT_KINDS)}, not {self.kind!r}")
        if self.count < 1:
            raise ValueError("fault count must be at least 1")
        if self.kind == "status" and not 100 <= self.status <= 599:
            raise ValueError(f"not an HTTP status: {self.status}")

    @classmethod
    def from_json(cls, body: dict[str, Any], *, default_path: str) -> Fault:
        """The control API's ``{kind, path, count, status, retry_after, seconds}``."""
        retry_after = body.get("retry_after")
        return cls(
            kind=body.get("kind", "status"),
            path=str(body.get("path", default_path)),
            count=int(body.get("count", 1)),
            status=int(body.get("status", 503)),
            retry_after=float(retry_after) if retry_after is not None else None,
            seconds=float(body.get("seconds", 6.0)),
        )


class FaultBook:
    """Injected faults, consumed by ``intercept`` in the API middleware."""

    def __init__(self, expire_tokens: Callable[[], None]) -> None:
        self.pending: list[Fault] = []
        self.applied = 0
        self._expire_tokens = expire_tokens

    def inject(self, fault: Fault) -> None:
        self.pending.append(fault)

    def clear(self) -> None:
        self.pending.clear()

    async def intercept(self, request: web.Request) -> web.StreamResponse | None:
        """Apply the first matching fault: an answer to send, or None to carry on."""
        for fault in self.pending:
            if not request.path.startswith(fault.path):
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.pending.remove(fault)
            self.applied += 1
            return await _apply(fault, request, self._expire_tokens)
        return None


async def _apply(
    fault: Fault, request: web.Request, expire_tokens: Callable[[], None]
) -> web.StreamResponse | None:
    if fault.kind == "expire_tokens":
        expire_tokens()
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "reset":
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPServiceUnavailable()  # the connection is gone: this never arrives
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    return web.json_response(
        {"detail": f"injected fault: {fault.status}"}, status=fault.status, headers=headers
    )


def add_fault_routes(
    app: web.Application, book_of: Callable[[web.Request], FaultBook], *, default_path: str
) -> None:
    """``POST /_control/faults {kind, path, count, …}`` and ``DELETE /_control/faults``."""

    async def inject(request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await read_object(request), default_path=default_path)
        except (TypeError, ValueError) as exc:
            return problem(400, str(exc))
        book = book_of(request)
        book.inject(fault)
        return reply({"faults_pending": len(book.pending)}, status=201)

    async def clear(request: web.Request) -> web.Response:
        book_of(request).clear()
        return reply({"faults_pending": 0})

    app.router.add_post("/_control/faults", inject)
    app.router.add_delete("/_control/faults", clear)
