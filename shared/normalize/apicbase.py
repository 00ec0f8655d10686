"""Apicbase supplier purchase orders → canonical events.

Pure: no I/O, no clock, no logging. The webhook body and an item of the
supplier order list have the same shape (seed 004, api-facts §5.3): prices are
strings, ``quantity_ordered`` an integer, dates in no documented format.

An Apicbase order is immutable once ``ORDERED`` and has no version; its
identity is its ``id``: an order whose push failed stays in the cart and the
customer places it again (api-facts §5.2), keeping its id. Its
idempotency key names its state by a digest of the normalized order
(``shared.applied.state_digest``: decimals by value, ``ordered_on`` in UTC to
the second), so the webhook copy and the API copy (which adds bookkeeping
fields such as ``fetched_by_supplier`` and may write ``"26.1"`` for
``"26.10"`` or another offset and precision) share it; a consumer applies
the order once either way, deciding by the order's ``id`` and content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from shared import keys
from shared.normalize.fields import (
    as_required_obj,
    decimal,
    obj,
    required_array,
    required_text,
    text,
    timestamp,
    word,
)
from shared.schema.models import CanonicalEvent, EchoInfo, Order, Prices, Timestamp

# Apicbase status -> (process_status, logistics_status). Unknown statuses pass through.
STATUS_MAP: Final[dict[str, tuple[str, str | None]]] = {
    "ORDERED": ("Issued", "Open"),
    "DELIVERED": ("Issued", "Delivered"),
}


def normalize_purchase_order(
    document: Any, *, received_at: datetime, channel: Literal["webhook", "api"]
) -> CanonicalEvent:
    """A purchase order from the signed webhook (``webhook``) or the list endpoint (``api``)."""
    root = as_required_obj(document, "body")
    document_id = required_text(root, "id", "")
    packages = required_array(root, "packages", "")
    expected = timestamp(root, "expected_delivery_date", "")
    owner = obj(root, "owned_by", "")
    order = Order.model_validate(
        {
            "purchase_order_number": text(root, "order_number", ""),
            "buyer": {
                "account_number": text(root, "supplier_customer_number", ""),
                "contact": text(owner, "username", "owned_by"),
            },
            "remarks": text(root, "order_remarks", ""),
            "ordered_on": timestamp(root, "ordered_on", ""),
            "expected_delivery_date": expected,
            "total_amount": decimal(root, "theoretical_price", ""),
            "lines": [_line(package, i, expected) for i, package in enumerate(packages)],
            "lines_complete": True,
        }
    )
    status = word(root, "status", "")
    process_status, logistics_status = STATUS_MAP.get(status or "", (status, None))
    event = CanonicalEvent.model_validate(
        {
            "event_id": "",
            "idempotency_key": "",
            "source": "apicbase",
            "channel": channel,
            "kind": "order",
            "document_id": document_id,
            "document_number": order.purchase_order_number,
            "process_status": process_status,
            "logistics_status": logistics_status,
            "last_updated_at": order.ordered_on,
            "received_at": keys.require_aware(received_at),
            "echo": EchoInfo(),
            "order": order,
            "raw": document,
        }
    )
    return keys.keyed_by_state(event)


def _line(value: Any, index: int, expected: Timestamp | None) -> dict[str, Any]:
    path = f"packages[{index}]"
    package = as_required_obj(value, path)
    stock_item = obj(package, "stock_item", path)
    supplier_package = obj(package, "supplier_package", path)
    unit_price = decimal(
        supplier_package, "theoretical_price_per_package", f"{path}.supplier_package"
    )
    prices: Prices | None = None
    if unit_price is not None:
        prices = {
            "gross": None,
            "net": {"transaction": {"value": unit_price, "currency": None}, "base": None},
            "discount_percentage": None,
            "unit_of_measure": None,
            "unit_quantity": None,
        }
    return {
        # Apicbase packages have no position; the 1-based index stands in for one.
        "position": str(index + 1),
        "line_type": "Item",
        "item": {
            "number": text(supplier_package, "supplier_article_number", f"{path}.supplier_package"),
            "revision": None,
            "name": text(stock_item, "name", f"{path}.stock_item"),
            "supplier_item_number": None,
            "purchase_unit_of_measure": None,
        },
        "delivery_schedule": [
            {
                "position": None,
                "date": expected,
                "quantity": decimal(package, "quantity_ordered", path),
                "status": None,
                "etd": None,
                "eta": None,
            }
        ],
        "prices": prices,
        "total_amount": decimal(package, "total_theoretical_price", path),
        "process_status": "Issued",
        "logistics_status": "Open",
        "changed": True,
    }
