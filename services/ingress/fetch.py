"""The port of the legacy GET webhook: fetch the whole document by id.

A GET webhook carries no body, only the id (seed-000, api-facts §1.1), so
ingress fetches ``GET /v2/order/{id}`` or ``GET /v2/shipment/{id}`` with the
Tradecloud API client (bearer token: Basic is refused there, api-facts §7.15)
before publishing. Implementations return the decoded document (exact
decimals, as ``loads_exact`` gives) and raise ``UpstreamUnavailable`` when the
API cannot be reached, ``UpstreamRejected`` when it refuses.
"""

from __future__ import annotations

from typing import Any, Protocol

from shared.clients.tradecloud import TradecloudClient


class DocumentFetcher(Protocol):
    async def fetch_order(self, order_id: str) -> Any:
        """The order as ``GET /v2/order/{order_id}`` returns it."""

    async def fetch_shipment(self, shipment_id: str) -> Any:
        """The shipment as ``GET /v2/shipment/{shipment_id}`` returns it."""


class TradecloudFetcher:
    """``DocumentFetcher`` over the Tradecloud API client (JWT bearer, retries, limits)."""

    def __init__(self, client: TradecloudClient) -> None:
        self._client = client

    async def fetch_order(self, order_id: str) -> Any:
        return await self._client.get_order(order_id)

    async def fetch_shipment(self, shipment_id: str) -> Any:
        return await self._client.get_shipment(shipment_id)

    async def close(self) -> None:
        await self._client.close()
