import pytest

from shared import keys
from shared.normalize import echo
from tests.support.documents import apicbase_event, apicbase_order


def test_idempotency_key_format() -> None:
    assert keys.idempotency_key("tradecloud", "order", "o-1", 5) == "tradecloud:order:o-1:v5"
    assert (
        keys.idempotency_key("apicbase", "order", "a-1", None, "f00d") == "apicbase:order:a-1:hf00d"
    )
    with pytest.raises(ValueError, match="state digest"):
        keys.idempotency_key("apicbase", "order", "a-1", None)


def test_a_versionless_document_is_keyed_by_its_state_whatever_the_formatting() -> None:
    webhook = apicbase_event(apicbase_order("a1", price="26.10"))
    api = apicbase_event(
        apicbase_order("a1", price="26.1", ordered_on="2026-02-01T10:30:00.123Z"), "api"
    )
    assert webhook.idempotency_key == api.idempotency_key
    assert webhook.idempotency_key.startswith("apicbase:order:a1:h")
    assert webhook.event_id != api.event_id, "one key, two deliveries"
    changed = apicbase_event(apicbase_order("a1", quantity=4))
    assert changed.idempotency_key != webhook.idempotency_key


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
