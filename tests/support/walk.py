"""Walk normalized events for invariants that hold on every field."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from pydantic import BaseModel


def decimals(value: Any) -> Iterator[Decimal]:
    """Every Decimal inside models, dicts and lists (``raw`` excluded by the caller)."""
    if isinstance(value, Decimal):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from decimals(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from decimals(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from decimals(item)
