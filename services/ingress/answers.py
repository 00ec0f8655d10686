"""What each failure answers, in one JSON shape (pure).

The status decides whether the platform retries (api-facts §1.3, §5.2):
Tradecloud retries any status above 500 forever and nothing else, Apicbase
retries nothing and shows a 4xx message to the customer at checkout. So:

* input we can never accept → 4xx with a message a person can act on and,
  for schema errors, the field path;
* a GET webhook naming a document the Tradecloud API no longer has → 404
  ``document_not_found``, only once that was recorded in the invalid queue
  (the same GET would fail the same way forever; 503 if the record failed);
* anything transient → 503 with ``Retry-After`` (a slow Tradecloud API too:
  ``upstream_timeout`` once the GET webhook's fetch budget is spent); an
  unexpected exception is treated as transient too (a bug fixed and deployed
  then receives the retried event instead of losing it), so ingress never
  answers 500.

Every error body is ``{"status", "error", "message", "path", "request_id"}``
(plus ``retry_after`` on 503); ``error`` is a stable code, also used as the
``outcome`` metrics label, so the set is closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import orjson

from services.ingress.verify import AuthenticationRequired, SignatureMismatch
from shared.errors import (
    Backpressure,
    BrokerUnavailable,
    InvalidPayload,
    PublishNacked,
    PublishTimeout,
    PublishUnroutable,
    RetryableError,
    UpstreamRejected,
    UpstreamUnavailable,
)

ACCEPTED: Final = "accepted"


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    error: str
    message: str
    path: str | None = None
    retry_after: float | None = None
    challenge: str | None = None

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.challenge is not None:
            headers["WWW-Authenticate"] = self.challenge
        return headers

    def body(self, request_id: str) -> bytes:
        document: dict[str, object] = {
            "status": self.status,
            "error": self.error,
            "message": self.message,
            "path": self.path,
            "request_id": request_id,
        }
        if self.retry_after is not None:
            document["retry_after"] = max(1, math.ceil(self.retry_after))
        return orjson.dumps(document)


_RETRYABLE_CODES: Final[dict[type[RetryableError], str]] = {
    Backpressure: "backpressure",
    BrokerUnavailable: "broker_unavailable",
    PublishTimeout: "publish_timeout",
    PublishNacked: "publish_nacked",
    PublishUnroutable: "publish_unroutable",
    UpstreamUnavailable: "upstream_unavailable",
}

OUTCOMES: Final = frozenset(
    {
        ACCEPTED,
        "bad_request",
        "malformed_json",
        "client_disconnected",
        "body_timeout",
        "missing_parameter",
        "unauthorized",
        "bad_signature",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "unsupported_media_type",
        "invalid_payload",
        "upstream_rejected",
        "upstream_not_configured",
        "upstream_timeout",
        "document_not_found",
        "quarantine_failed",
        "shutting_down",
        "internal_error",
        "retryable",
        *_RETRYABLE_CODES.values(),
    }
)
"""Every ``error`` code (and the success outcome): the bounded label set of the metrics."""


def client_disconnected() -> Problem:
    """The client closed the connection mid-body: its outcome, not ours (nobody reads it)."""
    return Problem(
        400, "client_disconnected", "the connection closed before the body was complete", "body"
    )


def malformed_json(exc: InvalidPayload) -> Problem:
    return Problem(400, "malformed_json", f"the body is not valid JSON: {exc.reason}", "body")


def invalid_payload(exc: InvalidPayload) -> Problem:
    return Problem(422, "invalid_payload", str(exc), exc.path or None)


def missing_parameter(name: str) -> Problem:
    return Problem(400, "missing_parameter", f"the {name} query parameter is required", name)


def body_timeout(seconds: float) -> Problem:
    """The body did not arrive within the read timeout: a client outcome (408), closed."""
    return Problem(
        408,
        "body_timeout",
        f"the body did not arrive within {seconds:g} s (ORDERBRIDGE_INGRESS_BODY_TIMEOUT_SECONDS)",
        "body",
    )


def too_large(limit: int) -> Problem:
    return Problem(413, "payload_too_large", f"the body exceeds the limit of {limit} bytes")


def unsupported_media_type(given: str, hint: str = "") -> Problem:
    message = f"send Content-Type: application/json, not {given!r}"
    return Problem(415, "unsupported_media_type", f"{message} ({hint})" if hint else message)


def shutting_down() -> Problem:
    return Problem(503, "shutting_down", "the server is shutting down; retry", retry_after=1)


def upstream_not_configured() -> Problem:
    return Problem(
        503,
        "upstream_not_configured",
        "the GET webhook needs the Tradecloud API client, which is not configured here",
        retry_after=60,
    )


UPSTREAM_RETRY_AFTER: Final = 30
"""Seconds a caller is asked to wait when the Tradecloud API is slow or down."""


def document_not_found(kind: str, document_id: str, parameter: str) -> Problem:
    """A GET webhook named a document the Tradecloud API says does not exist (404).

    404 because that is literally true of the resource the URL names, and any
    4xx ends Tradecloud's retries (api-facts §1.3): a document that is gone
    stays gone, so retrying forever (the 502 this used to get) only fills
    their queue and our logs. Not 410 (we do not know it ever existed for our
    user), not 422 (nothing is wrong with the request). The stable code tells
    it apart from ``not_found`` (no such endpoint). Answered only after the
    miss was recorded in ``orderbridge.invalid``.
    """
    return Problem(
        404,
        "document_not_found",
        f"Tradecloud has no {kind} {document_id!r} (GET /v2/{kind}/{{id}} answered 404); "
        "recorded in the orderbridge.invalid queue; do not retry",
        parameter,
    )


def quarantine_failed(kind: str, document_id: str, reason: str, retry_after: float) -> Problem:
    """The document is missing upstream, but recording that failed: retry, so it is not lost."""
    return Problem(
        503,
        "quarantine_failed",
        f"Tradecloud has no {kind} {document_id!r}, but recording that in the "
        f"orderbridge.invalid queue failed ({reason}); retry",
        retry_after=retry_after,
    )


def upstream_timeout(kind: str, document_id: str, seconds: float) -> Problem:
    """The fetch did not finish within the ingress budget: transient, the platform retries."""
    return Problem(
        503,
        "upstream_timeout",
        f"the Tradecloud API did not answer the fetch of {kind} {document_id!r} "
        f"within {seconds:g}s; retry",
        retry_after=UPSTREAM_RETRY_AFTER,
    )


def internal_error() -> Problem:
    return Problem(
        503, "internal_error", "an unexpected error occurred; it was logged; retry", retry_after=5
    )


def problem_for(exc: BaseException) -> Problem:
    """The answer for an exception raised while handling a webhook."""
    if isinstance(exc, AuthenticationRequired):
        return Problem(401, "unauthorized", str(exc), challenge=exc.challenge)
    if isinstance(exc, SignatureMismatch):
        return Problem(403, "bad_signature", str(exc))
    if isinstance(exc, InvalidPayload):
        return invalid_payload(exc)
    if isinstance(exc, RetryableError):
        code = _RETRYABLE_CODES.get(type(exc), "retryable")
        retry_after = exc.retry_after if exc.retry_after is not None else 5
        return Problem(503, code, str(exc), retry_after=retry_after)
    if isinstance(exc, UpstreamRejected):
        # The Tradecloud API refused our fetch (credentials, permissions, or a
        # 404 that is not about the document, e.g. the login on a wrong base
        # URL): a deployment problem. 502 makes Tradecloud retry until it is
        # fixed. A 404 on the document itself is ``DocumentNotFound``, which the
        # GET handler records and answers 404 before it could get here.
        return Problem(
            502, "upstream_rejected", f"the Tradecloud API refused the fetch: {exc}", retry_after=60
        )
    return internal_error()
