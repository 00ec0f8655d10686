"""Small, unique canonical events for broker tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from shared.normalize import tradecloud
from shared.schema.models import CanonicalEvent


def order_event(
    *,
    document_id: str | None = None,
    version: int = 1,
    process_status: str = "Confirmed",
    logistics_status: str = "Open",
    lines: int = 1,
    event_name: str = "OrderLinesConfirmedBySupplier",
) -> CanonicalEvent:
    """A Tradecloud order webhook event with a fresh document id unless one is given."""
    order_id = document_id or f"test-{uuid.uuid4()}"
    body = {
        "eventName": event_name,
        "orderEvent": {
            "orderId": order_id,
            "version": version,
            "buyerOrder": {"purchaseOrderNumber": f"PO-{order_id[-8:]}"},
            "status": {"processStatus": process_status, "logisticsStatus": logistics_status},
            "lines": [
                {
                    "id": f"{order_id}-l{i}",
                    "buyerLine": {"position": str(10 * (i + 1))},
                    "deliverySchedule": [
                        {"position": "1", "date": "2026-05-01", "quantity": Decimal("12.500")}
                    ],
                    "status": {
                        "processStatus": process_status,
                        "logisticsStatus": logistics_status,
                    },
                    "lastUpdatedAt": "2026-02-01T10:00:00.000Z",
                }
                for i in range(lines)
            ],
            "lastUpdatedAt": "2026-02-01T10:00:00.000Z",
        },
        "meta": {"messageId": str(uuid.uuid4())},
    }
    return tradecloud.normalize_order_webhook(body, received_at=datetime.now(UTC))
