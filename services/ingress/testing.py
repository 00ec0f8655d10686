"""Fakes for the ingress ports (unit tests; integration tests use the real client and broker)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from services.ingress.fetch import DocumentNotFound, Kind
from shared.errors import OrderbridgeError


class FakeFetcher:
    """A ``DocumentFetcher`` over dicts; records the ids asked for.

    An unknown id answers like the API's 404 on the document (``DocumentNotFound``,
    an ``UpstreamRejected`` with status 404); set ``fail_with`` to make every
    fetch raise (e.g. ``UpstreamUnavailable``, or a login's plain
    ``UpstreamRejected(status=404)``), or ``hang`` to make every fetch wait
    until cancelled (an API that never answers).
    """

    def __init__(
        self, orders: dict[str, Any] | None = None, shipments: dict[str, Any] | None = None
    ) -> None:
        self.orders = dict(orders or {})
        self.shipments = dict(shipments or {})
        self.fetched: list[tuple[str, str]] = []
        self.fail_with: OrderbridgeError | None = None
        self.hang = False
        self.cancelled = 0
        """Fetches that were cancelled while hanging (the ingress budget expired)."""

    async def fetch_order(self, order_id: str) -> Any:
        return await self._get("order", self.orders, order_id)

    async def fetch_shipment(self, shipment_id: str) -> Any:
        return await self._get("shipment", self.shipments, shipment_id)

    async def _get(self, kind: Kind, documents: dict[str, Any], document_id: str) -> Any:
        self.fetched.append((kind, document_id))
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.fail_with is not None:
            raise self.fail_with
        if document_id not in documents:
            raise DocumentNotFound(kind, document_id, f"GET /v2/{kind}/{document_id} answered 404")
        return documents[document_id]


@dataclass(frozen=True, slots=True)
class Quarantined:
    document: Any
    reason: str
    kind: str


class RecordingQuarantine:
    """A ``Quarantine`` that keeps what it was given; ``fail_with`` makes ``put`` raise."""

    def __init__(self) -> None:
        self.records: list[Quarantined] = []
        self.fail_with: Exception | None = None

    async def put(self, document: Any, reason: str, *, kind: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.records.append(Quarantined(document, reason, kind))
