"""The ingress contract as an OpenAPI 3.1 document (pure data, served at /openapi.json).

Request bodies are described as far as ingress relies on them; upstream
platforms add fields without notice (api-facts §1.5, §7.17), so every body
schema allows additional properties. A test keeps the paths here equal to the
app's routes and checks real answers against the response schemas.
"""

from __future__ import annotations

from typing import Any, Final

JSON: Final = "application/json"

_ERROR_CODES: Final = {
    "400": "Not JSON (`malformed_json`) or a missing id (`missing_parameter`).",
    "401": "Missing or wrong credentials (`unauthorized`); see `WWW-Authenticate`.",
    "403": "The Apicbase signature does not match the body (`bad_signature`).",
    "404": "The Tradecloud API has no such document (`document_not_found`: it answered 404 "
    "to `GET /v2/order/{id}` or `GET /v2/shipment/{id}`). Sent only once the miss is "
    "recorded in the `orderbridge.invalid` queue; the sender should not retry.",
    "408": "The body did not arrive within `ORDERBRIDGE_INGRESS_BODY_TIMEOUT_SECONDS` after "
    "the headers (`body_timeout`); the connection is closed.",
    "413": "The body exceeds the configured limit (`payload_too_large`).",
    "415": "Not `application/json` (`unsupported_media_type`).",
    "422": "Valid JSON that is not a document we can accept (`invalid_payload`); "
    "`path` names the field.",
    "502": "The Tradecloud API refused the fetch of the GET webhook (`upstream_rejected`: "
    "401/403 for our API credentials, or a 404 that is not about the document, such as "
    "the login on a wrong API base URL): a deployment problem; the sender should retry.",
    "503": "Transient: the broker is unreachable, did not confirm in time, or too many "
    "publishes wait (`broker_unavailable`, `publish_timeout`, `publish_nacked`, "
    "`publish_unroutable`, `backpressure`), the Tradecloud API is unreachable "
    "(`upstream_unavailable`) or did not answer within the GET webhook's fetch budget "
    "(`upstream_timeout`), the API client is not configured (`upstream_not_configured`), "
    "a missing document could not be recorded (`quarantine_failed`), the server is "
    "shutting down (`shutting_down`), or an unexpected error (`internal_error`). Retry "
    "after `Retry-After` seconds.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(status: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _ERROR_CODES[status],
        "content": {JSON: {"schema": _ref("Error")}},
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
    }
    if status in {"502", "503"}:
        response["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    if status == "401":
        response["headers"]["WWW-Authenticate"] = {"schema": {"type": "string"}}
    return response


def _accepted() -> dict[str, Any]:
    return {
        "description": "The broker confirmed the event (also for a redelivered duplicate, "
        "which gets the same deterministic `event_id`).",
        "content": {JSON: {"schema": _ref("Accepted")}},
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
    }


def _post(summary: str, body: str, errors: tuple[str, ...], security: list[Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": security,
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref(body)}}},
        "responses": {"202": _accepted(), **{code: _error(code) for code in errors}},
    }


def _get(summary: str, name: str, where: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": _TRADECLOUD,
        "parameters": [
            {"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}
        ],
        "responses": {
            "202": _accepted(),
            **{code: _error(code) for code in ("400", "401", "404", "422", "502", "503")},
        },
    }


_TRADECLOUD: Final[list[dict[str, list[str]]]] = [{"tradecloudBasic": []}, {"tradecloudBearer": []}]
_APICBASE: Final[list[dict[str, list[str]]]] = [{"apicbaseSignature": []}]
_POST_ERRORS: Final = ("400", "401", "408", "413", "415", "422", "503")

_OPS: Final = {
    "/healthz": ("The process is alive.", JSON),
    "/readyz": ("Ready: broker channel open and not draining (else 503).", JSON),
    "/openapi.json": ("This document.", JSON),
}


def document(*, max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI document for a server with this body limit."""
    order_post = _post(
        "Tradecloud order or order-documents webhook (api-facts §1.1).",
        "TradecloudOrderWebhook",
        _POST_ERRORS,
        _TRADECLOUD,
    )
    shipment_post = _post(
        "Tradecloud shipment webhook: the whole current shipment.",
        "TradecloudShipmentWebhook",
        _POST_ERRORS,
        _TRADECLOUD,
    )
    apicbase_post = _post(
        "Apicbase purchase order, signed with X-APIC-WEBHOOK-SIGNATURE (api-facts §5.6). "
        "A 4xx refuses the order: Apicbase shows the message to the customer.",
        "ApicbasePurchaseOrder",
        ("400", "401", "403", "408", "413", "415", "422", "503"),
        _APICBASE,
    )
    apicbase_post["parameters"] = [
        {
            "name": "X-APIC-WEBHOOK-SIGNATURE",
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        }
    ]
    legacy = "Legacy GET webhook (seed-000): the whole {} is fetched from the Tradecloud API."
    paths: dict[str, Any] = {
        "/webhooks/tradecloud/orders": {
            "post": order_post,
            "put": order_post,
            "get": _get(legacy.format("order"), "orderId", "query"),
        },
        "/webhooks/tradecloud/orders/{orderId}": {
            "get": _get(legacy.format("order"), "orderId", "path")
        },
        "/webhooks/tradecloud/shipments": {
            "post": shipment_post,
            "put": shipment_post,
            "get": _get(legacy.format("shipment"), "shipmentId", "query"),
        },
        "/webhooks/tradecloud/shipments/{shipmentId}": {
            "get": _get(legacy.format("shipment"), "shipmentId", "path")
        },
        "/webhooks/apicbase/orders": {"post": apicbase_post},
    }
    for path, (summary, media) in _OPS.items():
        paths[path] = {
            "get": {
                "summary": summary,
                "security": [],
                "responses": {"200": {"description": summary, "content": {media: {}}}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "orderbridge ingress",
            "version": "1",
            "description": "Tradecloud and Apicbase webhooks into RabbitMQ. A 202 is sent only "
            "after the broker confirmed the event; transient trouble answers 503 with "
            f"Retry-After, never 500. Bodies up to {max_body_bytes} bytes.",
        },
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "headers": {
                "RequestId": {
                    "description": "The request id (the caller's X-Request-ID when given).",
                    "schema": {"type": "string"},
                },
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
            "securitySchemes": {
                "tradecloudBasic": {"type": "http", "scheme": "basic"},
                "tradecloudBearer": {"type": "http", "scheme": "bearer"},
                "apicbaseSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-APIC-WEBHOOK-SIGNATURE",
                    "description": "Hex HMAC-SHA256 of the body with the shared secret.",
                },
            },
        },
    }


_OPEN_OBJECT: Final = {"type": "object", "additionalProperties": True}

_SCHEMAS: Final[dict[str, Any]] = {
    "Accepted": {
        "type": "object",
        "required": ["event_id"],
        "properties": {"event_id": {"type": "string", "format": "uuid"}},
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "required": ["status", "error", "message", "path", "request_id"],
        "properties": {
            "status": {"type": "integer"},
            "error": {"type": "string", "description": "A stable code, e.g. invalid_payload."},
            "message": {"type": "string"},
            "path": {
                "type": ["string", "null"],
                "description": "The offending field, e.g. orderEvent.lines[3].buyerLine.",
            },
            "request_id": {"type": "string"},
            "retry_after": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": False,
    },
    "TradecloudOrderWebhook": {
        "type": "object",
        "properties": {
            "eventName": {"type": "string"},
            "orderEvent": _OPEN_OBJECT,
            "singleDeliveryOrderEvent": _OPEN_OBJECT,
            "simpleOrderEvent": _OPEN_OBJECT,
            "orderDocumentsEvent": _OPEN_OBJECT,
            "meta": _OPEN_OBJECT,
        },
        "oneOf": [
            {"required": ["orderEvent"]},
            {"required": ["singleDeliveryOrderEvent"]},
            {"required": ["simpleOrderEvent"]},
            {"required": ["orderDocumentsEvent"]},
        ],
        "additionalProperties": True,
    },
    "TradecloudShipmentWebhook": {
        "type": "object",
        "required": ["shipment"],
        "properties": {
            "eventName": {"type": "string"},
            "shipment": _OPEN_OBJECT,
            "meta": _OPEN_OBJECT,
        },
        "additionalProperties": True,
    },
    "ApicbasePurchaseOrder": {
        "type": "object",
        "required": ["id", "packages"],
        "properties": {
            "id": {"type": ["string", "integer"]},
            "order_number": {"type": "string"},
            "status": {"type": "string"},
            "ordered_on": {"type": ["string", "null"]},
            "packages": {"type": "array", "items": _OPEN_OBJECT},
            "supplier_customer_number": {"type": ["string", "null"]},
        },
        "additionalProperties": True,
    },
}
