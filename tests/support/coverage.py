"""Field coverage: every leaf of an upstream document, and where its value lands.

``leaves`` walks a received document and names each leaf (a scalar, or an
empty array or object) by a *canonical path*: array indices become ``[]``
(``lines[].deliverySchedule[].quantity``), and the keys of open-ended maps
become ``*``: request kinds (``requests.*``: the kind turns into
``Request.kind``) and the keys of ``eventDates``, ``indicators`` and
``identifiers``, which the normalizers keep by name (those names are carried
beside the path, to find the value again). ``meta.supplierErpMeta`` is opaque
JSON carried whole: everything below it is ``meta.supplierErpMeta.**``.

``Table`` resolves a canonical path in a table of patterns; a pattern ending in
``<GROUP>`` hands the rest of the path to a group (a sub-table shared by every
place a structure occurs: prices, addresses, documents…). ``index`` flattens a
normalized event the same way, and ``carried`` says whether a raw value is
among the normalized values at a path: decimals by value, timestamps by text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Final, NamedTuple

from shared.schema.models import CanonicalEvent

CARRIED_KEYS: Final = frozenset({"eventDates", "indicators", "identifiers"})
"""Open-ended maps whose keys the normalizers keep by name (``order.event_dates.<key>``)."""
DROPPED_KEYS: Final = frozenset({"requests"})
"""Open-ended maps whose keys become a value (``requests.proposal`` → ``kind: proposal``)."""
OPAQUE: Final = "meta.supplierErpMeta"
"""Opaque JSON, normalized whole: its leaves are ``meta.supplierErpMeta.**``."""


class Leaf(NamedTuple):
    path: str
    """Canonical path, e.g. ``lines[].supplierLine.requests.*.prices.netPrice.priceInTransactionCurrency.value``."""
    keys: tuple[str, ...]
    """The keys behind each carried ``*`` (and the rest path behind ``**``), in order."""
    value: Any


def join(path: str, key: str) -> str:
    if not path:
        return key
    if not key:
        return path
    return path + key if key.startswith("[") else f"{path}.{key}"


def leaves(value: Any, path: str = "") -> list[Leaf]:
    """Every leaf below ``value`` (whose own path is ``path``), by canonical path."""
    found: list[Leaf] = []
    _walk(value, path, (), found)
    return found


def _walk(value: Any, path: str, keys: tuple[str, ...], found: list[Leaf]) -> None:
    if path == OPAQUE:
        found.extend(Leaf(f"{OPAQUE}.**", (*keys, rest), leaf) for rest, leaf in _opaque(value, ""))
    elif isinstance(value, Mapping) and value:
        last = path[path.rfind(".") + 1 :]
        for key, item in value.items():
            if last in CARRIED_KEYS:
                _walk(item, f"{path}.*", (*keys, key), found)
            elif last in DROPPED_KEYS:
                _walk(item, f"{path}.*", keys, found)
            else:
                _walk(item, f"{path}.{key}" if path else key, keys, found)
    elif isinstance(value, list | tuple) and value:
        path += "[]"
        for item in value:
            _walk(item, path, keys, found)
    else:
        found.append(Leaf(path, keys, value))


def _opaque(value: Any, rest: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _opaque(item, join(rest, key))
    elif isinstance(value, list | tuple) and value:
        for item in value:
            yield from _opaque(item, rest + "[]")
    else:
        yield rest, value


@cache
def fill(target: str, keys: tuple[str, ...]) -> str:
    """``target`` with its ``*`` / ``**`` replaced by the keys a leaf carried."""
    parts = target.split(".")
    wild = [i for i, part in enumerate(parts) if part in ("*", "**")]
    if len(wild) != len(keys):
        raise AssertionError(f"table target {target!r} does not fit the path's keys {keys}")
    result = ""
    for i, part in enumerate(parts):
        result = join(result, keys[wild.index(i)] if i in wild else part)
    return result


# ------------------------------------------------------------------ tables


class Resolved(NamedTuple):
    target: str | None
    """The normalized path (with ``*`` still to fill); None in a raw-only table."""
    entries: tuple[str, ...]
    """The table entries and group members (``<GROUP>member``) the path went through."""


class Table:
    """Patterns → normalized paths; ``prefix.<GROUP>`` hands the rest to ``groups[GROUP]``."""

    def __init__(
        self, entries: Mapping[str, str | None], groups: Mapping[str, Mapping[str, str]]
    ) -> None:
        self.entries = entries
        self.groups = groups
        self.resolve = cache(self._resolve)

    def _resolve(self, path: str) -> Resolved | None:
        found = _resolve(path, self.entries, self.groups)
        return None if found is None else Resolved(found[0], tuple(found[1]))

    def members(self) -> set[str]:
        """Every entry, and every member of a group an entry reaches (for the stale check)."""
        ids = set(self.entries)
        pending, seen = list(self.entries), set()
        while pending:
            group = _group(pending.pop())
            if group is not None and group[1] not in seen:
                name = group[1]
                seen.add(name)
                ids.update(f"<{name}>{member}" for member in self.groups[name])
                pending.extend(self.groups[name])
        return ids

    def containers(self) -> set[str]:
        """The path of every object and array the table reaches into."""
        return {
            path[:i]
            for path in self._expanded(self.entries)
            for i, char in enumerate(path)
            if char in ".["
        }

    def _expanded(self, entries: Mapping[str, Any]) -> Iterator[str]:
        for pattern in entries:
            group = _group(pattern)
            if group is None:
                yield pattern
            else:
                prefix, name = group
                yield from (prefix + member for member in self._expanded(self.groups[name]))


def _group(pattern: str) -> tuple[str, str] | None:
    """``(prefix, GROUP)`` of a pattern ending in ``<GROUP>``; None for a plain one."""
    start = pattern.find("<")
    if start < 0 or not pattern.endswith(">"):
        return None
    return pattern[:start], pattern[start + 1 : -1]


def _resolve(
    path: str, entries: Mapping[str, str | None], groups: Mapping[str, Mapping[str, str]]
) -> tuple[str | None, list[str]] | None:
    if path in entries:
        return entries[path], [path]
    for pattern, target in entries.items():
        group = _group(pattern)
        if group is None or not path.startswith(group[0]):
            continue
        prefix, name = group
        inner = _resolve(path[len(prefix) :], groups[name], groups)
        if inner is None:
            continue
        inner_target, used = inner
        full = None
        if target is not None and inner_target is not None:
            full = target.replace(f"<{name}>", inner_target)
        # this entry, the group member it went through, and what that member used
        return full, [pattern, f"<{name}>{used[0]}", *used[1:]]
    return None


# ------------------------------------------------------------ the normalized side


def index(event: CanonicalEvent) -> dict[str, set[Any]]:
    """Every normalized value (``raw`` excluded) by its path, as ``carried`` compares them."""
    found: dict[str, set[Any]] = {}
    _index(event.model_dump(exclude={"raw"}), "", found)
    return found


def _index(value: Any, path: str, found: dict[str, set[Any]]) -> None:
    if type(value) is dict and value and not ("kind" in value and "utc" in value):
        for key, item in value.items():
            _index(item, f"{path}.{key}" if path else str(key), found)
    elif type(value) is list and value:
        path += "[]"
        for item in value:
            _index(item, path, found)
    else:
        found.setdefault(path, set()).add(_comparable(value))


def _comparable(value: Any) -> Any:
    if type(value) is dict:
        return value.get("text")  # a timestamp: its text (or an empty object)
    if type(value) is int:
        return Decimal(value)
    return None if type(value) is list else value  # an empty list: present, no value


def carried(raw: str | int | Decimal, found: set[Any]) -> bool:
    """Whether a raw string or number is among the normalized values ``found``.

    Numbers compare by value (``26.10`` = ``26.1``; Apicbase writes money as text,
    Tradecloud positions may come as numbers), everything else as text.
    """
    if raw in found:
        return True
    number = _number(raw)
    return (number is not None and number in found) or str(raw) in found


def _number(raw: str | int | Decimal) -> Decimal | None:
    try:
        number = Decimal(raw.strip() if isinstance(raw, str) else raw)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
