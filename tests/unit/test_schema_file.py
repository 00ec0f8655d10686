import json
from datetime import UTC, datetime

import jsonschema
import pytest

from shared.normalize import apicbase, tradecloud
from shared.schema import export
from shared.schema.codec import encode_event
from tests.support.files import fixture


def test_committed_json_schema_is_current() -> None:
    assert export.SCHEMA_PATH.read_bytes() == export.render(), "run: python -m shared.schema.export"


def test_schema_describes_the_wire_format() -> None:
    schema = json.loads(export.SCHEMA_PATH.read_text())
    required = set(schema["required"])
    for name in (
        "schema_version",
        "event_id",
        "idempotency_key",
        "source",
        "channel",
        "kind",
        "event_name",
        "document_id",
        "document_number",
        "version",
        "message_id",
        "process_status",
        "logistics_status",
        "last_updated_at",
        "received_at",
        "echo",
        "raw",
    ):
        assert name in schema["properties"], name
        assert name in required, name
    money = schema["$defs"]["Money"]["properties"]["value"]
    assert money["type"] == "string", "decimals travel as strings"


NOW = datetime.now(UTC)
EVENTS = {
    "order webhook": lambda: tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-webhook-proposal.json"), received_at=NOW
    ),
    "order documents webhook": lambda: tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-documents-webhook.json"), received_at=NOW
    ),
    "shipment webhook": lambda: tradecloud.normalize_shipment_webhook(
        fixture("tradecloud/shipment-webhook.json"), received_at=NOW
    ),
    "polled order": lambda: tradecloud.normalize_polled_order(
        fixture("tradecloud/poll-orders-page.json")["data"][0],
        received_at=NOW,
        role="supplier",
        echo_policy="own-open-requests",
    ),
    "polled shipment": lambda: tradecloud.normalize_polled_shipment(
        fixture("tradecloud/poll-shipments-page.json")["data"][0], received_at=NOW
    ),
    "apicbase order": lambda: apicbase.normalize_purchase_order(
        fixture("apicbase/purchase-order.pretty-utf8.json"), received_at=NOW, channel="api"
    ),
}


@pytest.mark.parametrize("kind", sorted(EVENTS))
def test_every_kind_of_encoded_event_validates_against_the_committed_schema(kind: str) -> None:
    event = EVENTS[kind]()
    jsonschema.validate(json.loads(encode_event(event)), json.loads(export.SCHEMA_PATH.read_text()))
