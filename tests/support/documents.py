"""Tradecloud, shipment and Apicbase documents shaped as the platforms document them.

Small builders for the exactly-once tables and the per-case integration tests:
each returns the *raw* document (as Tradecloud or Apicbase would send it) and a
``normalize`` helper turns it into the canonical event the services publish.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.normalize import apicbase, tradecloud
from shared.schema.models import CanonicalEvent

T0 = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 2, 20, tzinfo=UTC)


def stamp(minutes: float, *, zoneless: bool = False) -> str:
    """``T0 + minutes`` as Tradecloud writes it: ms and ``Z``, or zone-less (its doc examples)."""
    moment = T0 + timedelta(minutes=minutes)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return text if zoneless else text + "Z"


@dataclass
class Line:
    minute: float
    quantity: Decimal = Decimal("10")
    status: str = "Confirmed"
    in_progress: str | None = None


@dataclass
class OrderState:
    """One state of a Tradecloud order (what a poll or GET would show)."""

    order_id: str
    version: int
    minute: float
    lines: dict[str, Line] = field(default_factory=dict)
    contact: str = "buyer@example.com"
    labels: tuple[str, ...] = ()
    zoneless: bool = False
    message_id: str = "m-1"

    def document(self, *, only: tuple[str, ...] | None = None, key: str = "id") -> dict[str, Any]:
        return {
            key: self.order_id,
            "version": self.version,
            "buyerOrder": {
                "purchaseOrderNumber": f"PO-{self.order_id}",
                "contact": {"email": self.contact},
                "labels": list(self.labels),
            },
            "status": {"processStatus": "Confirmed", "logisticsStatus": "Open"},
            "lines": [
                _line(line_id, line, self.zoneless)
                for line_id, line in self.lines.items()
                if only is None or line_id in only
            ],
            "meta": {"messageId": self.message_id},
            "lastUpdatedAt": stamp(self.minute, zoneless=self.zoneless),
        }

    def polled(self, **options: Any) -> CanonicalEvent:
        return tradecloud.normalize_polled_order(self.document(), received_at=RECEIVED, **options)

    def webhook_body(
        self,
        event_name: str,
        *,
        lines: tuple[str, ...] | None = None,
        message_id: str | None = None,
        without_lines_key: bool = False,
    ) -> dict[str, Any]:
        """The POST body: the header and the lines the event touched (none: header-only)."""
        event = self.document(only=lines if lines is not None else (), key="orderId")
        event.pop("meta")
        if without_lines_key:
            event.pop("lines")
        return {
            "eventName": event_name,
            "orderEvent": event,
            "meta": {"messageId": message_id or f"{self.order_id}-{event_name}-{self.version}"},
        }

    def webhook(self, event_name: str, **kw: Any) -> CanonicalEvent:
        options = {k: kw.pop(k) for k in ("role", "echo_policy") if k in kw}
        return tradecloud.normalize_order_webhook(
            self.webhook_body(event_name, **kw), received_at=RECEIVED, **options
        )

    def evolve(self, **changes: Any) -> OrderState:
        """A copy with ``changes`` (lines deep-copied, so the original stays as it was)."""
        state = copy.deepcopy(self)
        for name, value in changes.items():
            setattr(state, name, value)
        return state


def _line(line_id: str, line: Line, zoneless: bool) -> dict[str, Any]:
    status: dict[str, Any] = {"processStatus": line.status, "logisticsStatus": "Open"}
    if line.in_progress:
        status["inProgressStatus"] = line.in_progress
    return {
        "id": line_id,
        "buyerLine": {"position": line_id.upper()},
        "deliverySchedule": [{"position": "1", "date": "2026-05-01", "quantity": line.quantity}],
        "status": status,
        "lastUpdatedAt": stamp(line.minute, zoneless=zoneless),
    }


# ------------------------------------------------------------------ shipments


def shipment_document(
    shipment_id: str,
    *,
    minute: float,
    line_minutes: tuple[float, ...] = (1,),
    status: str = "Issued",
    reason: str | None = None,
    atd: str | None = None,
    zoneless: bool = False,
) -> dict[str, Any]:
    """A shipment as polled (all lines); lines keep their own stamps (api-facts §1.1)."""
    departure: dict[str, Any] = {"location": {"locationType": "AgreedPlace"}}
    if atd is not None:
        departure["atdDate"] = atd
    return {
        "id": shipment_id,
        "supplierShipment": {"shipmentNumber": f"SN-{shipment_id}"},
        "locations": {"departure": departure},
        "lines": [
            {
                "purchaseOrderNumber": "PO-1",
                "purchaseOrderLinePosition": str(i + 1),
                "deliverySchedulePosition": "1",
                "supplierLine": {
                    "despatchAdviceNumber": "DA-1",
                    "despatchAdviceLinePosition": str(i + 1),
                    "despatchQuantity": Decimal("5"),
                },
                "meta": {"lastUpdatedAt": stamp(line_minute, zoneless=zoneless)},
            }
            for i, line_minute in enumerate(line_minutes)
        ],
        "status": {"processStatus": status, "processStatusReason": reason},
        "meta": {"lastUpdatedAt": stamp(minute, zoneless=zoneless)},
    }


def shipment_event(document: dict[str, Any], event_name: str = "") -> CanonicalEvent:
    """As pushed by the shipment webhook (with ``event_name``, a message of its own) or polled."""
    if event_name:
        message = {"messageId": str(uuid.uuid4())}
        return tradecloud.normalize_shipment_webhook(
            {"eventName": event_name, "shipment": document, "meta": message},
            received_at=RECEIVED,
        )
    return tradecloud.normalize_polled_shipment(document, received_at=RECEIVED)


# ------------------------------------------------------------------ Apicbase


def apicbase_order(
    order_id: str,
    *,
    price: str = "26.10",
    quantity: int = 3,
    ordered_on: str = "2026-02-01T11:30:00.123456+01:00",
) -> dict[str, Any]:
    """An Apicbase purchase order; prices are strings (api-facts §5.3)."""
    return {
        "id": order_id,
        "order_number": f"ORD-{order_id}",
        "status": "ORDERED",
        "ordered_on": ordered_on,
        "owned_by": {"username": "chef"},
        "order_remarks": None,
        "packages": [
            {
                "stock_item": {"name": "Crème fraîche 1L"},
                "supplier_package": {
                    "supplier_article_number": "ART-1",
                    "theoretical_price_per_package": price,
                },
                "quantity_ordered": quantity,
                "total_theoretical_price": str(Decimal(price) * quantity),
            }
        ],
        "expected_delivery_date": "2026-02-05",
        "theoretical_price": str(Decimal(price) * quantity),
        "supplier_customer_number": "CUST-1",
    }


def apicbase_event(document: dict[str, Any], channel: str = "webhook") -> CanonicalEvent:
    return apicbase.normalize_purchase_order(
        document,
        received_at=RECEIVED,
        channel="webhook" if channel == "webhook" else "api",
    )
