"""Exact JSON in and out.

Upstream documents are decoded with ``loads_exact``: JSON numbers with a
fraction or exponent become ``Decimal`` built from the number's own text
(``78.90`` stays ``78.90``); orjson would make them floats. Events are encoded
with orjson: the normalized part walks the models' fields (decimals as
fixed-point strings, as the schema says), ``raw`` writes its decimals back as
the same number literals through ``orjson.Fragment``. So ``raw`` is lossless and
the rest is language-neutral.

The normalized part's bytes equal pydantic's ``model_dump_json`` (the
reference, ``encode_event_reference``; property tests hold the two together)
at a third of its cost: every published event pays this, on the services' one
busy core.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import msgspec
import orjson
from pydantic import BaseModel

from shared.errors import InvalidPayload
from shared.schema.models import CanonicalEvent, fixed_point

_decoder = msgspec.json.Decoder(float_hook=Decimal)

MAX_DEPTH: Final = 64
"""Objects and arrays nest at most this deep in an accepted document.

Tradecloud's and Apicbase's documents nest about 8 levels. Without a bound,
a body nested a few hundred levels in an unknown field decodes, then cannot
be written back (orjson stops at 254), and thousands of levels exhaust the
decoder's recursion: either way a document that can never succeed.
"""


class NestedTooDeep(InvalidPayload):
    """Well-formed JSON nested beyond ``MAX_DEPTH``: 422, not "malformed" (400)."""


def loads_exact(data: bytes | str) -> Any:
    """Decode JSON with exact decimals; raise ``InvalidPayload`` on malformed input.

    ``NestedTooDeep`` (a subclass) for JSON nested beyond ``MAX_DEPTH``.
    """
    try:
        value = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidPayload("body", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    if not _within_depth(value, data):
        raise _too_deep()
    return value


def _too_deep() -> NestedTooDeep:
    return NestedTooDeep("body", f"nested deeper than {MAX_DEPTH} levels of objects and arrays")


def _within_depth(value: Any, data: bytes | str) -> bool:
    """Whether ``value`` nests at most ``MAX_DEPTH`` objects and arrays.

    A body with no more opening brackets than the bound cannot exceed it (a
    C-speed count, no walk); otherwise an iterative walk over the containers.
    """
    if isinstance(data, bytes):
        brackets = data.count(b"{") + data.count(b"[")
    else:
        brackets = data.count("{") + data.count("[")
    if brackets <= MAX_DEPTH:
        return True
    stack: list[tuple[Any, int]] = []
    if type(value) is dict or type(value) is list:
        stack.append((value, 1))
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        for child in node.values() if type(node) is dict else node:
            kind = type(child)
            if kind is dict or kind is list:
                if depth >= MAX_DEPTH:
                    return False
                push((child, depth + 1))
    return True


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
    except orjson.JSONEncodeError as exc:
        if "Recursion limit" in str(exc):
            raise _too_deep() from None  # only data that bypassed loads_exact gets here
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


def _normalized(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.__dict__  # fields in declaration order, as pydantic writes them
    if isinstance(value, Decimal):
        return fixed_point(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_event(event: CanonicalEvent) -> bytes:
    """The AMQP body of an event: normalized fields first, ``raw`` last and exact."""
    fields = dict(event.__dict__)
    raw = fields.pop("raw")
    try:
        head = orjson.dumps(fields, default=_normalized, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: pydantic writes it
        return encode_event_reference(event)
    return b"".join((head[:-1], b',"raw":', dumps_exact(raw), b"}"))


def encode_event_reference(event: CanonicalEvent) -> bytes:
    """``encode_event`` through pydantic's serializer (slower; the definition of the bytes)."""
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
