"""Typed readers for untrusted JSON, shared by the normalizers.

Each reader takes a container, a key and the dotted path of the container,
returns a value of one exact type (or None when absent), and raises
``InvalidPayload`` naming ``path.key`` when the shape is impossible. Paths are
only formatted on error: a 100-line order reads thousands of fields.

Scalars are coerced leniently (an integer position becomes ``"10"``);
structures are not (a list where an object belongs is an error). Upstream
payloads must be decoded with ``shared.schema.codec.loads_exact``: a float here
means precision was already lost, so it is refused loudly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final

from shared.errors import InvalidPayload
from shared.schema.models import Timestamp

JsonObject = Mapping[str, Any]
EMPTY: Final[JsonObject] = {}

MAX_EXPONENT: Final = 30
"""Decimals are refused beyond 1e30 or below 1e-30: no order quantity or price is."""

_FLOAT_HINT = "a float: decode payloads with shared.schema.codec.loads_exact"


Path = str | tuple["Path", str | int]
"""A field path, built lazily: ``(("orderEvent", "lines"), 3)`` renders as
``orderEvent.lines[3]``. Tuples cost a fraction of an f-string, and the text is
only needed for an error."""


def render(path: Path) -> str:
    if isinstance(path, str):
        return path
    parent, key = path
    return at(parent, key)


def at(path: Path, key: str | int) -> str:
    """``path.key`` or ``path[i]`` as text."""
    base = render(path)
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


# ------------------------------------------------------------ structures


def as_obj(value: Any, path: Path) -> JsonObject | None:
    """``value`` itself as an optional JSON object."""
    if value is None or type(value) is dict:
        return value
    if isinstance(value, Mapping):
        return value
    raise InvalidPayload(render(path), f"expected an object, got {_type_name(value)}")


def as_required_obj(value: Any, path: Path) -> JsonObject:
    found = as_obj(value, path)
    if found is None:
        raise InvalidPayload(render(path), "required object is missing")
    return found


def obj(container: JsonObject, key: str, path: Path) -> JsonObject:
    """An optional nested object; an absent one reads as empty."""
    value = container.get(key)
    if value is None:
        return EMPTY
    if type(value) is dict or isinstance(value, Mapping):
        return value
    raise InvalidPayload(at(path, key), f"expected an object, got {_type_name(value)}")


def maybe_obj(container: JsonObject, key: str, path: Path) -> JsonObject | None:
    """An optional nested object; None when absent."""
    value = container.get(key)
    if value is None or type(value) is dict:
        return value
    return as_obj(value, at(path, key))


def required_obj(container: JsonObject, key: str, path: Path) -> JsonObject:
    return as_required_obj(container.get(key), at(path, key))


def array(container: JsonObject, key: str, path: Path) -> Sequence[Any] | None:
    """An optional JSON array."""
    value = container.get(key)
    if value is None or type(value) is list:
        return value
    if isinstance(value, tuple):
        return value
    raise InvalidPayload(at(path, key), f"expected an array, got {_type_name(value)}")


def required_array(container: JsonObject, key: str, path: Path) -> Sequence[Any]:
    found = array(container, key, path)
    if found is None:
        raise InvalidPayload(at(path, key), "required array is missing")
    return found


# --------------------------------------------------------------- scalars


def text(container: JsonObject, key: str, path: Path) -> str | None:
    """An optional string; integers and exact decimals become their text."""
    value = container.get(key)
    if value is None or type(value) is str:
        return value
    return _coerce_text(value, path, key)


def as_text(value: Any, path: Path) -> str | None:
    if value is None or type(value) is str:
        return value
    return _coerce_text(value, path, None)


def _coerce_text(value: Any, path: Path, key: str | None) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    where = at(path, key) if key is not None else render(path)
    if isinstance(value, float):
        raise InvalidPayload(where, _FLOAT_HINT)
    raise InvalidPayload(where, f"expected a string, got {_type_name(value)}")


def nonempty_text(container: JsonObject, key: str, path: Path) -> str | None:
    """Like ``text`` but an empty string reads as absent (split lines have empty positions)."""
    return text(container, key, path) or None


MAX_IDENTIFIER: Final = 200
"""Identifiers (document and line ids, positions) travel in AMQP headers, ledger keys
and ERP columns; the platforms' are UUIDs or short ERP numbers."""

MAX_WORD: Final = 100
"""Statuses and event names become routing-key words; a routing key holds 255 bytes."""


def required_text(container: JsonObject, key: str, path: Path) -> str:
    """A required identifier: non-empty and at most ``MAX_IDENTIFIER`` characters."""
    found = text(container, key, path)
    if found is None or not found.strip():
        raise InvalidPayload(at(path, key), "required identifier is missing or empty")
    return bounded(found, MAX_IDENTIFIER, key, path)


def identifier(container: JsonObject, key: str, path: Path) -> str | None:
    """An optional identifier (a line id, a position): empty reads as absent; bounded."""
    found = text(container, key, path)
    return bounded(found, MAX_IDENTIFIER, key, path) if found else None


def word(container: JsonObject, key: str, path: Path) -> str | None:
    """An optional status or event name, bounded to ``MAX_WORD`` characters."""
    found = text(container, key, path)
    return bounded(found, MAX_WORD, key, path) if found is not None else None


def bounded(value: str, limit: int, key: str, path: Path) -> str:
    if len(value) > limit:
        raise InvalidPayload(at(path, key), f"longer than {limit} characters ({len(value)})")
    return value


def boolean(container: JsonObject, key: str, path: Path) -> bool | None:
    value = container.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidPayload(at(path, key), f"expected true or false, got {_type_name(value)}")


def decimal(container: JsonObject, key: str, path: Path) -> Decimal | None:
    """An exact decimal from a JSON number (Tradecloud) or string (Apicbase)."""
    value = container.get(key)
    if value is None:
        return None
    kind = type(value)
    if kind is Decimal:
        exact: Decimal = value
        if exact.is_finite() and (-MAX_EXPONENT <= exact.adjusted() <= MAX_EXPONENT):
            return exact  # the common cases, checked cheaply
    elif kind is int:
        return Decimal(value)
    return as_decimal(value, at(path, key))


def as_decimal(value: Any, path: Path) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidPayload(render(path), "expected a number, got a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return _plain(value, path)
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return None
        try:
            return _plain(Decimal(stripped), path)
        except InvalidOperation:
            raise InvalidPayload(render(path), f"not a decimal number: {value[:40]!r}") from None
    if isinstance(value, float):
        raise InvalidPayload(render(path), _FLOAT_HINT)
    raise InvalidPayload(render(path), f"expected a number, got {_type_name(value)}")


def _plain(value: Decimal, path: Path) -> Decimal:
    if not value.is_finite():
        raise InvalidPayload(render(path), "not a finite number")
    if not value.is_zero() and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        # 1e999999 would become a million digits in fixed-point JSON.
        raise InvalidPayload(render(path), f"number out of range (beyond 1e±{MAX_EXPONENT})")
    return value


MAX_INTEGER: Final = 2**63 - 1
"""Integers (versions) must fit AMQP's signed 64-bit header field."""


def integer(container: JsonObject, key: str, path: Path) -> int | None:
    """An optional whole number from 0 to ``MAX_INTEGER`` (a version).

    Integral decimals (``7.0``, ``7e0``) and digit strings are accepted. The
    bound is checked before any conversion: ``int(Decimal("1e1000000"))``
    builds a million-digit number and once froze the event loop for 34 s.
    """
    value = container.get(key)
    if value is None:
        return None
    if type(value) is int:
        if 0 <= value <= MAX_INTEGER:
            return value
    elif isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            if value.is_zero():
                return 0
            if value > 0 and value.adjusted() <= 18 and value <= MAX_INTEGER:
                return int(value)
    elif isinstance(value, str):
        digits = value.strip()
        if (
            digits.isascii()
            and digits.isdigit()
            and len(digits) <= 19
            and int(digits) <= MAX_INTEGER
        ):
            return int(digits)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        shown = _type_name(value)
    else:
        shown = repr(str(value)[:40]) + ("…" if len(str(value)) > 40 else "")
    raise InvalidPayload(at(path, key), f"expected a whole number from 0 to 2^63-1, got {shown}")


# ------------------------------------------------------------ timestamps


def timestamp(container: JsonObject, key: str, path: Path) -> Timestamp | None:
    """An upstream timestamp: verbatim text plus, for instants, the UTC value."""
    value = container.get(key)
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise InvalidPayload(at(path, key), f"expected a timestamp string, got {_type_name(value)}")
    return parse_timestamp(value)


@lru_cache(maxsize=4096)
def parse_timestamp(raw: str) -> Timestamp:
    """Classify and parse once; orders repeat the same few stamps on every line.

    The cached dict is shared: callers must not mutate it (pydantic copies it).
    """
    stripped = raw.strip()
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        return {"text": raw, "kind": "unparsed", "utc": None}
    if parsed.tzinfo is not None:
        return {"text": raw, "kind": "instant", "utc": parsed.astimezone(UTC)}
    is_date = len(stripped) <= 10 and "T" not in stripped and " " not in stripped
    return {"text": raw, "kind": "date" if is_date else "local", "utc": None}


def after(stamp: Timestamp | None, cursor: Timestamp | None) -> bool | None:
    """Whether ``stamp`` lies strictly after ``cursor``; None when either is not an instant."""
    if stamp is None or cursor is None:
        return None
    stamp_utc, cursor_utc = stamp["utc"], cursor["utc"]
    if stamp_utc is None or cursor_utc is None:
        return None
    return stamp_utc > cursor_utc


def _type_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return type(value).__name__
