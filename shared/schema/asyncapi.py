"""The AsyncAPI 3.0 document of what orderbridge puts on RabbitMQ, generated.

python -m shared.schema.asyncapi          # rewrite shared/schema/asyncapi.yaml
python -m shared.schema.asyncapi --check  # exit 1 when the committed file is stale

It describes the topic exchange ``orderbridge.events`` (the routing key as a
channel address with the parameters source, kind, process_status and
logistics_status), the AMQP properties and headers ``shared.broker.envelope``
sets, and the canonical event payload: the very JSON Schema
``shared.schema.export`` writes, its ``$defs`` moved to ``components/schemas``
(the AsyncAPI schema format is JSON Schema draft-07 plus extensions, which the
generated schema fits). Refused documents on ``orderbridge.dead-letter``
(``invalid.<source>.<kind>``, queue ``orderbridge.invalid``) are the second
channel. AsyncAPI 3.0 rather than 2.6: channels and operations are separate, so
the channel address can carry the routing key's parameters.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, get_args

import yaml

from shared.broker.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    INVALID_PREFIX,
    INVALID_QUEUE,
    UNKNOWN,
)
from shared.normalize.apicbase import STATUS_MAP
from shared.schema.export import SCHEMA_ID, json_schema
from shared.schema.models import SCHEMA_VERSION, Kind, Source

ASYNCAPI_PATH: Final = Path(__file__).with_name("asyncapi.yaml")
AMQP_BINDING_VERSION: Final = "0.3.0"
REF_PREFIX: Final = "#/components/schemas/"
# shared.broker.quarantine.REASON_HEADER; not imported, so generating stays free of aio-pika
# (a test compares the refused-document headers with what quarantine_envelope sets).
REASON_HEADER: Final = "x-orderbridge-reason"

# Statuses are open strings (a new upstream value passes through, see "Schema evolution");
# these are the values the platforms document today, as examples, never an enumeration.
TRADECLOUD_PROCESS_STATUSES: Final = (
    "Issued",
    "InProgress",
    "Confirmed",
    "Rejected",
    "Completed",
    "Cancelled",
    "Approved",
)
TRADECLOUD_LOGISTICS_STATUSES: Final = (
    "Open",
    "Produced",
    "ReadyToShip",
    "Shipped",
    "Delivered",
    "Cancelled",
)


def _known(tradecloud: tuple[str, ...], apicbase: Sequence[str | None]) -> list[str]:
    values = [*tradecloud, *(status for status in apicbase if status), UNKNOWN]
    return list(dict.fromkeys(values))


def _hoisted(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The event schema without ``$defs``, and the definitions, refs pointing into components."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: REF_PREFIX + value.removeprefix("#/$defs/")
                if key == "$ref" and isinstance(value, str)
                else rewrite(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    body = {k: v for k, v in schema.items() if k not in {"$defs", "$schema", "$id"}}
    definitions = schema.get("$defs", {})
    return rewrite(body), {name: rewrite(d) for name, d in definitions.items()}


def _headers() -> dict[str, Any]:
    """The AMQP headers ``envelope_for`` sets (a value that is null is left out)."""
    return {
        "type": "object",
        "required": ["source", "kind", "document_id", "schema_version"],
        "properties": {
            "source": {"type": "string", "enum": list(get_args(Source))},
            "kind": {"type": "string", "enum": list(get_args(Kind))},
            "document_id": {"type": "string", "description": "As the event's document_id."},
            "schema_version": {"type": "integer", "const": SCHEMA_VERSION},
            "event_name": {
                "type": "string",
                "description": "Tradecloud eventName; absent when the channel cannot tell.",
            },
            "version": {
                "type": "integer",
                "description": "Tradecloud order version; absent without one.",
            },
        },
    }


def document() -> dict[str, Any]:
    schema = json_schema()
    event, definitions = _hoisted(schema)
    apicbase_process = [process for process, _ in STATUS_MAP.values()]
    apicbase_logistics = [logistics for _, logistics in STATUS_MAP.values()]
    amqp_exchange = {"type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
    return {
        "asyncapi": "3.0.0",
        "id": "urn:orderbridge:events",
        "info": {
            "title": "orderbridge events",
            "version": str(SCHEMA_VERSION),
            "description": (
                "Canonical events orderbridge publishes for every accepted Tradecloud and "
                "Apicbase document (purchase orders, order responses, order documents, "
                "shipments), and the documents it refused. Version is the canonical event's "
                f"schema_version; the payload schema is {SCHEMA_ID}. Consumers bind their "
                "own queue to the exchange with routing-key patterns and must ignore keys "
                "they do not know."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": (
                    "The RabbitMQ of a deployment (docker compose: rabbitmq:5672; "
                    "ORDERBRIDGE_AMQP_URL elsewhere)."
                ),
            }
        },
        "channels": {
            "events": {
                "address": "{source}.{kind}.{process_status}.{logistics_status}",
                "title": EVENTS_EXCHANGE,
                "description": (
                    f"The durable topic exchange {EVENTS_EXCHANGE}; the address is the routing "
                    "key. A status is one topic word: missing is 'unknown', characters other "
                    "than letters, digits, '_' and '-' become '_'. Every event also lands in "
                    "the stream orderbridge.archive (bound with '#')."
                ),
                "servers": [{"$ref": "#/servers/rabbitmq"}],
                "parameters": {
                    "source": {
                        "enum": list(get_args(Source)),
                        "description": "The platform the document came from.",
                    },
                    "kind": {
                        "enum": list(get_args(Kind)),
                        "description": "What the document is.",
                    },
                    "process_status": {
                        "description": (
                            "The document's process status, an open set: Tradecloud's order "
                            "and shipment statuses, Apicbase's mapped ones, or 'unknown'."
                        ),
                        "examples": _known(TRADECLOUD_PROCESS_STATUSES, apicbase_process),
                    },
                    "logistics_status": {
                        "description": (
                            "The document's logistics status, an open set (Tradecloud's, "
                            "Apicbase's mapped ones) or 'unknown'."
                        ),
                        "examples": _known(TRADECLOUD_LOGISTICS_STATUSES, apicbase_logistics),
                    },
                },
                "messages": {"canonicalEvent": {"$ref": "#/components/messages/CanonicalEvent"}},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": EVENTS_EXCHANGE, **amqp_exchange},
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }
                },
            },
            "invalid": {
                "address": f"{INVALID_PREFIX}.{{source}}.{{kind}}",
                "title": f"{DEAD_LETTER_EXCHANGE} ({INVALID_PREFIX}.#)",
                "description": (
                    f"Documents a poller, the fetcher or a GET webhook refused, published raw to "
                    f"the topic exchange {DEAD_LETTER_EXCHANGE} and kept in the quorum queue "
                    f"{INVALID_QUEUE} with the reason."
                ),
                "servers": [{"$ref": "#/servers/rabbitmq"}],
                "parameters": {
                    "source": {"enum": list(get_args(Source))},
                    "kind": {"description": "The kind of document that was refused."},
                },
                "messages": {"refusedDocument": {"$ref": "#/components/messages/RefusedDocument"}},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": DEAD_LETTER_EXCHANGE, **amqp_exchange},
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }
                },
            },
        },
        "operations": {
            "publishEvent": {
                "action": "send",
                "title": "Publish a canonical event",
                "summary": "ingress, poller and apicbase-fetcher, with publisher confirms.",
                "description": (
                    "A webhook is answered 2xx, a poll cursor advances and an Apicbase order is "
                    "marked fetched only after RabbitMQ confirmed the publish; publishes are "
                    "mandatory, so an unroutable event is an error, never silently dropped."
                ),
                "channel": {"$ref": "#/channels/events"},
                "messages": [{"$ref": "#/channels/events/messages/canonicalEvent"}],
                "bindings": {
                    "amqp": {
                        "deliveryMode": 2,
                        "mandatory": True,
                        "timestamp": True,
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }
                },
            },
            "receiveEvent": {
                "action": "receive",
                "title": "Consume canonical events",
                "summary": "orderbridge consumer routes, and any consumer of your own.",
                "description": (
                    "Bind a durable queue to the exchange with routing-key patterns (e.g. "
                    "'tradecloud.order.Confirmed.*'). Delivery is at-least-once: skip a "
                    "redelivered message_id, or decide per document part as orderbridge's "
                    "routes do."
                ),
                "channel": {"$ref": "#/channels/events"},
                "messages": [{"$ref": "#/channels/events/messages/canonicalEvent"}],
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            },
            "refuseDocument": {
                "action": "send",
                "title": "Quarantine a refused document",
                "channel": {"$ref": "#/channels/invalid"},
                "messages": [{"$ref": "#/channels/invalid/messages/refusedDocument"}],
                "bindings": {
                    "amqp": {
                        "deliveryMode": 2,
                        "mandatory": True,
                        "timestamp": True,
                        "bindingVersion": AMQP_BINDING_VERSION,
                    }
                },
            },
        },
        "components": {
            "messages": {
                "CanonicalEvent": {
                    "name": "CanonicalEvent",
                    "title": "Canonical event",
                    "summary": "One accepted upstream document, normalized.",
                    "description": (
                        "AMQP properties: delivery_mode 2 (persistent), content_type "
                        "application/json, message_id = the event's event_id, timestamp = "
                        "received_at, type = '<source>.<kind>', app_id 'orderbridge'. Money and "
                        "quantities are decimal strings; 'raw' keeps the upstream document with "
                        "its numbers exact."
                    ),
                    "contentType": "application/json",
                    "headers": _headers(),
                    "payload": {"$ref": REF_PREFIX + "CanonicalEvent"},
                    "correlationId": {
                        "description": "The AMQP message_id, equal to the payload's event_id.",
                        "location": "$message.payload#/event_id",
                    },
                    "bindings": {
                        "amqp": {
                            "contentEncoding": "identity",
                            "bindingVersion": AMQP_BINDING_VERSION,
                        }
                    },
                },
                "RefusedDocument": {
                    "name": "RefusedDocument",
                    "title": "Refused document",
                    "summary": "An upstream document the normalizer refused, raw.",
                    "description": (
                        "AMQP properties: persistent, content_type application/json, message_id "
                        "= a content hash (stable on retry), type = '<source>.<kind>.invalid'."
                    ),
                    "contentType": "application/json",
                    "headers": {
                        "type": "object",
                        "required": [REASON_HEADER, "source", "kind"],
                        "properties": {
                            REASON_HEADER: {
                                "type": "string",
                                "description": "Why it was refused (the field), at most 1000 "
                                "characters.",
                            },
                            "source": {"type": "string", "enum": list(get_args(Source))},
                            "kind": {"type": "string"},
                        },
                    },
                    "payload": {"description": "The upstream document as received."},
                },
            },
            "schemas": {"CanonicalEvent": event, **definitions},
        },
    }


def render() -> bytes:
    text = yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)
    header = "# Generated by `python -m shared.schema.asyncapi` (make generate); do not edit.\n"
    return (header + text).encode()


def main(argv: list[str]) -> int:
    if "--check" in argv:
        current = ASYNCAPI_PATH.read_bytes() if ASYNCAPI_PATH.exists() else b""
        if current != render():
            sys.stderr.write(f"{ASYNCAPI_PATH} is stale: run python -m shared.schema.asyncapi\n")
            return 1
        return 0
    ASYNCAPI_PATH.write_bytes(render())
    sys.stdout.write(f"wrote {ASYNCAPI_PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
