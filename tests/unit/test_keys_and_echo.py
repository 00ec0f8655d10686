from decimal import Decimal

import pytest

from shared import keys
from shared.normalize import echo


def test_idempotency_key_format() -> None:
    assert keys.idempotency_key("tradecloud", "order", "o-1", 5) == "tradecloud:order:o-1:v5"
    hashed = keys.idempotency_key("apicbase", "order", "a-1", None, {"b": Decimal("1.10"), "a": 1})
    assert hashed == keys.idempotency_key(
        "apicbase", "order", "a-1", None, {"a": 1, "b": Decimal("1.10")}
    )
    assert hashed.startswith("apicbase:order:a-1:h") and len(hashed.split(":h")[1]) == 32
    assert hashed != keys.idempotency_key(
        "apicbase", "order", "a-1", None, {"a": 1, "b": Decimal("1.1")}
    )


def test_event_id_is_deterministic_per_delivery() -> None:
    key = "tradecloud:order:o-1:v5"
    first = keys.event_id(key, "webhook", "m-1", "OrderIssuedByBuyer")
    assert first == keys.event_id(key, "webhook", "m-1", "OrderIssuedByBuyer")
    assert first != keys.event_id(key, "poll", "m-1", None)
    assert first != keys.event_id(key, "webhook", "m-2", "OrderIssuedByBuyer")


@pytest.mark.parametrize(
    ("role", "policy", "status", "in_progress", "expected"),
    [
        ("buyer", "own-open-requests", "InProgress", "OpenBuyerReopenRequest", True),
        ("buyer", "own-open-requests", "InProgress", "OpenBuyerReconfirmationRequest", True),
        ("buyer", "own-open-requests", "InProgress", "OpenSupplierProposal", False),
        ("supplier", "own-open-requests", "InProgress", "OpenSupplierProposal", True),
        ("supplier", "own-open-requests", "InProgress", "OpenSupplierReopenRequest", True),
        (
            "supplier",
            "own-open-requests",
            "InProgress",
            "OpenSupplierShipmentRescheduleRequest",
            True,
        ),
        ("supplier", "own-open-requests", "InProgress", "OpenBuyerReopenRequest", False),
        ("supplier", "own-open-requests", "Confirmed", "OpenSupplierProposal", False),
        ("buyer", "all-in-progress", "InProgress", "RejectedSupplierProposal", True),
        ("buyer", "all-in-progress", "Confirmed", None, False),
        ("buyer", "off", "InProgress", "OpenBuyerReopenRequest", False),
        (None, "own-open-requests", "InProgress", "OpenBuyerReopenRequest", False),
    ],
)
def test_echo_table(role, policy, status, in_progress, expected) -> None:  # type: ignore[no-untyped-def]
    assert echo.is_echo(role, policy, status, in_progress) is expected
