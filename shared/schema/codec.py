"""Exact JSON in and out.

Upstream documents are decoded with ``loads_exact``: JSON numbers with a
fraction or exponent become ``Decimal`` built from the number's own text
(``78.90`` stays ``78.90``); orjson would make them floats. Events are encoded
with pydantic's serializer for the normalized part (decimals as strings) and
orjson for ``raw``, whose decimals are written back as the same number literals
through ``orjson.Fragment``. So ``raw`` is lossless and the rest is
language-neutral.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import orjson

from shared.errors import InvalidPayload
from shared.schema.models import CanonicalEvent

_decoder = msgspec.json.Decoder(float_hook=Decimal)


def loads_exact(data: bytes | str) -> Any:
    """Decode JSON with exact decimals; raise ``InvalidPayload`` on malformed input."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidPayload("body", f"not valid JSON: {exc}") from None


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"non-finite decimal {value} cannot be written as JSON")
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_exact(value: Any) -> bytes:
    """Encode JSON-able data; ``Decimal`` values become exact number literals."""
    try:
        return orjson.dumps(value, default=_default)
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits; JSON allows them, so write their digits.
        return orjson.dumps(_big_ints_as_literals(value), default=_default)


def _big_ints_as_literals(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _big_ints_as_literals(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_literals(item) for item in value]
    if type(value) is int and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value).encode())
    return value


def encode_event(event: CanonicalEvent) -> bytes:
    """The AMQP body of an event: normalized fields first, ``raw`` last and exact."""
    head = event.model_dump_json(exclude={"raw"}).encode()
    return b"".join((head[:-1], b',"raw":', dumps_exact(event.raw), b"}"))


def decode_event(data: bytes | str) -> CanonicalEvent:
    """Parse an AMQP body back into the event (raises ``InvalidPayload`` when it is not one)."""
    from pydantic import ValidationError

    payload = loads_exact(data)
    try:
        return CanonicalEvent.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise InvalidPayload(path, first["msg"]) from None
