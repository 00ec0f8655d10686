"""Apicbase's order webhook, as the platform behaves (api-facts §5.2, §5.6).

* The order is POSTed to the supplier's URL the moment the customer places it,
  with ``X-APIC-WEBHOOK-SIGNATURE``: lowercase hex HMAC-SHA256, keyed with the
  supplier's OAuth client secret (or a separate signature key), over
  ``json.dumps(order)`` with Python's defaults: ``", "`` / ``": "``
  separators, ``ensure_ascii=True``, keys in document order. That is what
  Apicbase's own sample code computes.
* The body is normally exactly those bytes. With ``pretty`` it is the same
  order pretty-printed as raw UTF-8 instead, still signed over the compact
  form, so a receiver that only checks the raw bytes fails: it must also try
  ``json.dumps(json.loads(body))``.
* **One attempt, never retried**, not even after a 5xx or a timeout. A 2xx
  marks the order sent; anything else leaves it "not sent" (still in the
  customer's cart) with the status and the answer's body shown to the
  customer, who has to place the order again by hand.
* An answer can get lost (``lose_answer``: the supplier got the order and
  answered, Apicbase never saw the answer, as after a dropped connection or a
  timeout at checkout): the order stays in the cart, and when the customer
  places it again the supplier receives the **same order id** a second time.

Every attempt is recorded as a ``Delivery`` for tests, demos and the control API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import aiohttp

from shared.logging import get_logger

log = get_logger(__name__)

SIGNATURE_HEADER: Final = "X-APIC-WEBHOOK-SIGNATURE"
MAX_SHOWN_BODY: Final = 2000
"""Characters of the supplier's answer kept for the customer to read."""

Form = Literal["compact", "pretty"]


def signed_form(order: Mapping[str, Any]) -> bytes:
    """``json.dumps(order)`` with Python's defaults: the bytes the signature covers."""
    return json.dumps(order).encode()


def pretty_form(order: Mapping[str, Any]) -> bytes:
    """The same order pretty-printed as raw UTF-8: other bytes, same content."""
    return json.dumps(order, indent=2, ensure_ascii=False).encode("utf-8")


def signature(key: bytes, order: Mapping[str, Any]) -> str:
    return hmac.new(key, signed_form(order), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookTarget:
    """Where Apicbase support configured the supplier's webhook."""

    url: str
    key: bytes
    """The signature key: the client secret unless a separate key was arranged."""
    pretty: bool = False
    timeout: float = 30.0

    def __repr__(self) -> str:  # never print the key
        return f"WebhookTarget(url={self.url!r}, pretty={self.pretty})"


@dataclass
class Delivery:
    """One push of one order: what the customer saw at checkout."""

    order_id: str
    order_number: str
    url: str
    form: Form
    state: Literal["sent", "not_sent"] = "not_sent"
    status: int | None = None
    """The supplier's HTTP status; None when no answer came (connection error, timeout)."""
    response_body: str = ""
    error: str | None = None
    """Why it was not sent, as the customer reads it."""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    seconds: float = 0.0
    answer_lost: bool = False
    """The supplier answered (``received_status``) but Apicbase never got the answer."""
    received_status: int | None = None
    body: bytes = field(default=b"", repr=False)
    """The bytes actually sent (the signature covers the compact form of this order)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "order_number": self.order_number,
            "url": self.url,
            "form": self.form,
            "state": self.state,
            "status": self.status,
            "response_body": self.response_body,
            "error": self.error,
            "at": self.at,
            "seconds": round(self.seconds, 6),
            "answer_lost": self.answer_lost,
            "received_status": self.received_status,
        }


class WebhookSender:
    """Sends one signed POST per placed order; records each outcome, retries nothing."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self,
        order: Mapping[str, Any],
        target: WebhookTarget,
        *,
        pretty: bool | None = None,
        lose_answer: bool = False,
    ) -> Delivery:
        form: Form = "pretty" if (target.pretty if pretty is None else pretty) else "compact"
        body = pretty_form(order) if form == "pretty" else signed_form(order)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(target.key, order),
            "User-Agent": "Apicbase-Webhook-Simulator/1",
        }
        delivery = Delivery(
            str(order["id"]), str(order["order_number"]), target.url, form, body=body
        )
        self.deliveries.append(delivery)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        started = time.perf_counter()
        try:
            async with self._session.post(
                target.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=target.timeout),
            ) as response:
                delivery.status = response.status
                text = await response.text(errors="replace")
                delivery.response_body = text[:MAX_SHOWN_BODY]
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"[:MAX_SHOWN_BODY]
        delivery.seconds = time.perf_counter() - started
        if lose_answer:  # the supplier answered; Apicbase saw a dropped connection
            delivery.answer_lost, delivery.received_status = True, delivery.status
            delivery.status, delivery.response_body = None, ""
            delivery.error = "the supplier's answer was lost (connection dropped)"
        if delivery.status is not None and 200 <= delivery.status < 300:
            delivery.state = "sent"
        else:
            if delivery.error is None:
                delivery.error = f"the supplier answered {delivery.status}"
            log.info(
                "webhook answer lost; the order stays in the cart"
                if delivery.answer_lost
                else "webhook refused; Apicbase does not retry, the order stays in the cart",
                order_number=delivery.order_number,
                status=delivery.status,
                error=delivery.error,
            )
        return delivery

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
