"""Fakes for the ingress ports (unit tests; integration tests use the real client)."""

from __future__ import annotations

from typing import Any

from shared.errors import OrderbridgeError, UpstreamRejected


class FakeFetcher:
    """A ``DocumentFetcher`` over dicts; records the ids asked for.

    An unknown id answers like the API's 404 (``UpstreamRejected``); set
    ``fail_with`` to make every fetch raise (e.g. ``UpstreamUnavailable``).
    """

    def __init__(
        self, orders: dict[str, Any] | None = None, shipments: dict[str, Any] | None = None
    ) -> None:
        self.orders = dict(orders or {})
        self.shipments = dict(shipments or {})
        self.fetched: list[tuple[str, str]] = []
        self.fail_with: OrderbridgeError | None = None

    async def fetch_order(self, order_id: str) -> Any:
        return self._get("order", self.orders, order_id)

    async def fetch_shipment(self, shipment_id: str) -> Any:
        return self._get("shipment", self.shipments, shipment_id)

    def _get(self, kind: str, documents: dict[str, Any], document_id: str) -> Any:
        self.fetched.append((kind, document_id))
        if self.fail_with is not None:
            raise self.fail_with
        if document_id not in documents:
            raise UpstreamRejected(f"{kind} {document_id} not found", status=404)
        return documents[document_id]
