import json
from datetime import UTC, datetime

import jsonschema

from shared.normalize import tradecloud
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


def test_an_encoded_event_validates_against_the_committed_schema() -> None:
    event = tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-webhook-proposal.json"), received_at=datetime.now(UTC)
    )
    jsonschema.validate(json.loads(encode_event(event)), json.loads(export.SCHEMA_PATH.read_text()))
