"""The ports of the legacy GET webhook: fetch the whole document by id, record missing ones.

A GET webhook carries no body, only the id (seed-000, api-facts §1.1), so
ingress fetches ``GET /v2/order/{id}`` or ``GET /v2/shipment/{id}`` with the
Tradecloud API client (bearer token: Basic is refused there, api-facts §7.15)
before publishing. Implementations return the decoded document (exact
decimals, as ``loads_exact`` gives) and raise

* ``DocumentNotFound`` when the API answered 404 *to the document itself*:
  Tradecloud no longer has it (deleted, or never visible to our user). Ingress
  records it in the invalid queue and answers 404, so the platform stops
  retrying (api-facts §1.3: it retries every status above 500 forever);
* ``UpstreamRejected`` for any other refusal (401/403: our API credentials, or
  a 404 that is *not* about the document, see ``TradecloudFetcher``): a
  deployment problem, answered 502 so the platform retries until it is fixed;
* ``UpstreamUnavailable`` when the API cannot be reached (503, retried).
"""

from __future__ import annotations

from typing import Any, Final, Literal, Protocol
from urllib.parse import quote

from shared.clients.tradecloud import TradecloudClient
from shared.errors import UpstreamRejected

Kind = Literal["order", "shipment"]

DEFAULT_FETCH_TIMEOUT_SECONDS: Final = 10.0
"""How long one GET webhook may spend on the Tradecloud API (the default of
``ORDERBRIDGE_INGRESS_FETCH_TIMEOUT_SECONDS``).

Tradecloud's webhook client gave up after 60 s (api-facts §1.3, historical);
the fetch, the normalization and the confirmed publish all have to fit well
inside that, and a caller holding a connection for a minute helps nobody.
"""


class DocumentNotFound(UpstreamRejected):
    """The Tradecloud API answered 404 to ``GET /v2/<kind>/<id>``: no such document upstream.

    A subclass of ``UpstreamRejected`` (status 404) so code that only knows the
    parent still treats it as a permanent refusal; ingress catches it first.
    """

    def __init__(self, kind: Kind, document_id: str, detail: str) -> None:
        super().__init__(f"Tradecloud has no {kind} {document_id!r}: {detail}", status=404)
        self.kind: Kind = kind
        self.document_id = document_id
        self.detail = detail


class DocumentFetcher(Protocol):
    async def fetch_order(self, order_id: str) -> Any:
        """The order as ``GET /v2/order/{order_id}`` returns it."""

    async def fetch_shipment(self, shipment_id: str) -> Any:
        """The shipment as ``GET /v2/shipment/{shipment_id}`` returns it."""


class Quarantine(Protocol):
    """Where ingress records GET webhooks that named a document Tradecloud does not have.

    ``shared.broker.quarantine.BrokerQuarantine`` (confirmed publish to
    ``orderbridge.dead-letter`` under ``invalid.tradecloud.<kind>``, landing in
    ``orderbridge.invalid``) fits it as is. ``put`` returns only once the record
    is durable and raises (``RetryableError`` from the publisher) otherwise:
    ingress then answers 503 instead of claiming it was recorded.
    """

    async def put(self, document: Any, reason: str, *, kind: str) -> None: ...


class TradecloudFetcher:
    """``DocumentFetcher`` over the Tradecloud API client (JWT bearer, retries, limits).

    Why a 404 is only trusted when it answers the document's own path: the
    client logs in (``GET <base>/authentication/login``) before its first
    request, and on a wrong ``ORDERBRIDGE_TRADECLOUD_API_URL`` (``/v2``
    missing, an extra path segment) that login is itself answered 404, which
    the client raises as ``UpstreamRejected(status=404)`` too ("Tradecloud
    login answered 404 without tokens"), checked against the simulator. Were
    every 404 taken as "no such document", such a misconfiguration would
    refuse (404) and so lose every GET webhook. So only a 404 whose ``path``
    is the document's own (``UpstreamRejected.path``, set by the client for
    API calls, never for the login) counts.
    tests/integration/ingress/test_ingress_get_webhook.py pins both readings
    against the real client and the simulator.

    A wrong base URL that still reaches a Tradecloud login (another
    environment) fails the login with 401/403 (other credentials), again a
    502. Only a login that succeeds proves the base URL right, and then a 404
    on the document means the document is gone.
    """

    def __init__(self, client: TradecloudClient) -> None:
        self._client = client

    async def fetch_order(self, order_id: str) -> Any:
        try:
            return await self._client.get_order(order_id)
        except UpstreamRejected as exc:
            if _document_missing("order", order_id, exc):
                raise DocumentNotFound(
                    "order", order_id, f"GET /v2/order/{order_id} answered 404"
                ) from None
            raise

    async def fetch_shipment(self, shipment_id: str) -> Any:
        try:
            return await self._client.get_shipment(shipment_id)
        except UpstreamRejected as exc:
            if _document_missing("shipment", shipment_id, exc):
                raise DocumentNotFound(
                    "shipment", shipment_id, f"GET /v2/shipment/{shipment_id} answered 404"
                ) from None
            raise

    async def close(self) -> None:
        await self._client.close()


def _document_missing(kind: Kind, document_id: str, exc: UpstreamRejected) -> bool:
    """True when ``exc`` is the 404 answer to the document's own path (not the login's)."""
    return exc.status == 404 and exc.path == f"/{kind}/{quote(document_id, safe='')}"
