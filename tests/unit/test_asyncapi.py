"""The AsyncAPI document: current, valid, and true to what the publisher really sends.

Validity is checked against the official AsyncAPI 3.0.0 JSON Schema
(``tests/fixtures/asyncapi/asyncapi-3.0.0-without-id.schema.json.gz``: the file
``schemas/3.0.0-without-$id.json`` of asyncapi/spec-json-schemas 6.11.1,
Apache-2.0, gzipped byte for byte), so no validator package is needed.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import yaml

from services.cli import main as cli
from shared.broker.envelope import envelope_for
from shared.broker.quarantine import quarantine_envelope
from shared.normalize import apicbase, tradecloud
from shared.schema import asyncapi, export
from shared.schema.codec import encode_event
from shared.schema.models import CanonicalEvent
from tests.support.files import FIXTURES, fixture

OFFICIAL_SCHEMA = FIXTURES / "asyncapi/asyncapi-3.0.0-without-id.schema.json.gz"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(asyncapi.ASYNCAPI_PATH.read_text())
    return loaded


def events() -> list[CanonicalEvent]:
    return [
        tradecloud.normalize_order_webhook(
            fixture("tradecloud/order-webhook-proposal.json"), received_at=NOW
        ),
        tradecloud.normalize_order_webhook(
            fixture("tradecloud/order-documents-webhook.json"), received_at=NOW
        ),
        tradecloud.normalize_shipment_webhook(
            fixture("tradecloud/shipment-webhook.json"), received_at=NOW
        ),
        tradecloud.normalize_polled_order(
            fixture("tradecloud/poll-orders-page.json")["data"][0],
            received_at=NOW,
            role="supplier",
            echo_policy="own-open-requests",
        ),
        apicbase.normalize_purchase_order(
            fixture("apicbase/purchase-order.pretty-utf8.json"), received_at=NOW, channel="api"
        ),
    ]


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references expected: {ref}"
    node: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"unresolved $ref {ref}"
        node = node[token]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def payload_validator(document: dict[str, Any]) -> jsonschema.protocols.Validator:
    """The payload schema with the components it refers to, as one JSON Schema document."""
    root = {"$ref": "#/components/schemas/CanonicalEvent", "components": document["components"]}
    return jsonschema.Draft7Validator(root)


def test_the_committed_document_is_generated_from_the_models() -> None:
    assert asyncapi.ASYNCAPI_PATH.read_bytes() == asyncapi.render(), (
        "run: python -m shared.schema.asyncapi"
    )


def test_it_is_a_valid_asyncapi_3_document() -> None:
    official = json.loads(gzip.decompress(OFFICIAL_SCHEMA.read_bytes()))
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(official).iter_errors(committed())
    ]
    assert errors == []


def test_required_fields_and_every_reference_resolves() -> None:
    document = committed()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"] == "1"
    assert document["channels"]["events"]["bindings"]["amqp"]["exchange"]["name"] == (
        "orderbridge.events"
    )
    found = refs(document)
    assert "#/components/schemas/CanonicalEvent" in found
    for ref in found:
        resolve(document, ref)
    for name, channel in document["channels"].items():
        placeholders = set(re.findall(r"\{(\w+)\}", channel["address"]))
        assert placeholders == set(channel["parameters"]), name
    for name, operation in document["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), name


def test_the_payload_is_the_committed_json_schema() -> None:
    """Moving components/schemas back under $defs gives exactly the exported schema."""
    schemas = committed()["components"]["schemas"]
    text = json.dumps(schemas).replace('"#/components/schemas/', '"#/$defs/')
    rebuilt = json.loads(text)
    event = rebuilt.pop("CanonicalEvent")
    exported = json.loads(export.SCHEMA_PATH.read_text())
    exported.pop("$schema")
    exported.pop("$id")
    assert {**event, "$defs": rebuilt} == exported


@pytest.mark.parametrize("index", range(5))
def test_what_the_publisher_sends_matches_the_document(index: int) -> None:
    document = committed()
    event = events()[index]
    envelope = envelope_for(event)
    message = document["components"]["messages"]["CanonicalEvent"]
    jsonschema.validate(envelope.headers, message["headers"])
    payload_validator(document).validate(json.loads(encode_event(event)))
    parameters = document["channels"]["events"]["parameters"]
    source, kind, process, logistics = envelope.routing_key.split(".")
    assert source in parameters["source"]["enum"]
    assert kind in parameters["kind"]["enum"]
    assert process in parameters["process_status"]["examples"]
    assert logistics in parameters["logistics_status"]["examples"]


def test_the_headers_schema_names_every_header_the_envelope_sets() -> None:
    sent = {key for event in events() for key in envelope_for(event).headers}
    declared = committed()["components"]["messages"]["CanonicalEvent"]["headers"]
    assert sent == set(declared["properties"])


def test_a_refused_document_matches_its_message() -> None:
    envelope = quarantine_envelope(
        {"id": 1}, "lines[0].id: missing", source="tradecloud", kind="order"
    )
    message = committed()["components"]["messages"]["RefusedDocument"]
    jsonschema.validate(envelope.headers, message["headers"])
    assert set(envelope.headers) == set(message["headers"]["properties"])
    assert envelope.routing_key == "invalid.tradecloud.order"


def test_orderbridge_asyncapi_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["asyncapi"]) == 0
    assert capsys.readouterr().out.encode() == asyncapi.ASYNCAPI_PATH.read_bytes()
