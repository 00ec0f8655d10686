"""Checking a routes file completely before anything connects (pure).

``config.parse_config`` parses the file into models; this module finds what
the models alone would let through, and words every problem so that a person
can fix it: the route, the key, the value, the values that would work and the
closest one. A typo must not become a route that silently matches nothing
(``kinds = ["orders"]``) or an adapter that fails on its first event.

* Filter values: ``kinds`` and ``request_sides`` are closed sets; event names,
  statuses and request kinds are Tradecloud's open-ended values, accepted when
  known (``shared.schema.vocabulary``) or listed in the file's ``[known_values]``.
* Adapters: ``type`` is a built-in (``file``, ``http``, ``postgres``) or an
  installed plug-in; built-ins' keys are checked against the option models
  below (kept equal to the adapters' constructors by a test), a plug-in's
  against its factory's signature.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.schema import vocabulary


@dataclass(frozen=True)
class Problem:
    route: str | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f'route "{self.route}", ' if self.route else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'order'?"`` for the closest choice, or nothing."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {choice.lower(): choice for choice in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    if not close and len(word) >= 4:
        close = [choice for choice in choices if choice.startswith(word)][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


# -- filter values ---------------------------------------------------------------------------


class KnownValues(BaseModel):
    """``[known_values]``: values Tradecloud added after this release, accepted in filters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_names: tuple[str, ...] = ()
    line_process_statuses: tuple[str, ...] = ()
    line_in_progress_statuses: tuple[str, ...] = ()
    request_kinds: tuple[str, ...] = ()
    request_statuses: tuple[str, ...] = ()


CLOSED: dict[str, tuple[str, tuple[str, ...]]] = {
    "kinds": ("kind", vocabulary.KINDS),
    "request_sides": ("request side", vocabulary.REQUEST_SIDES),
}
OPEN: dict[str, tuple[str, tuple[str, ...]]] = {
    "event_names": ("Tradecloud event name", vocabulary.EVENT_NAMES),
    "line_process_statuses": ("line process status", vocabulary.LINE_PROCESS_STATUSES),
    "line_in_progress_statuses": ("line in-progress status", vocabulary.LINE_IN_PROGRESS_STATUSES),
    "request_kinds": ("request kind (snake_case as in the event)", vocabulary.REQUEST_KINDS),
    "request_statuses": ("request status", vocabulary.REQUEST_STATUSES),
}


def filter_problems(route: str, rules: BaseModel, known: KnownValues) -> list[Problem]:
    """Every filter value that is not a known one (``rules`` is a ``RouteFilter``)."""
    problems: list[Problem] = []
    for key, (label, allowed) in CLOSED.items():
        for value in getattr(rules, key):
            if value not in allowed:
                problems.append(
                    Problem(
                        route,
                        f"filter.{key}",
                        f"{value!r} is not a {label}: {' or '.join(allowed)}"
                        + did_you_mean(value, allowed),
                    )
                )
    for key, (label, listed) in OPEN.items():
        allowed = listed + getattr(known, key)
        for value in getattr(rules, key):
            if value not in allowed:
                hint = did_you_mean(value, allowed)
                shown = ", ".join(allowed) if len(allowed) <= 12 else f"{len(allowed)} known values"
                problems.append(
                    Problem(
                        route,
                        f"filter.{key}",
                        f"{value!r} is not a known {label} ({shown}){hint or '.'} If Tradecloud "
                        f"added it, list it under [known_values] {key}",
                    )
                )
    return problems


# -- adapters --------------------------------------------------------------------------------


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FileOptions(_Options):
    """``FileAdapter``'s keyword arguments."""

    path: str = Field(min_length=1)
    csv: bool = False
    fsync: bool = True
    intent_days: float = Field(default=7.0, gt=0)
    group_sync: bool = True


class HttpOptions(_Options):
    """``HttpAdapter``'s keyword arguments."""

    url: str
    headers: dict[str, str] | None = None
    timeout: float = Field(default=10.0, gt=0)
    method: str = "POST"

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, not {value!r}")
        return value


class PostgresOptions(_Options):
    """``PostgresAdapter``'s keyword arguments."""

    url: str
    pool_size: int = Field(default=8, ge=1)

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (the ERP database)")
        return value


BUILTIN_OPTIONS: dict[str, type[_Options]] = {
    "file": FileOptions,
    "http": HttpOptions,
    "postgres": PostgresOptions,
}


@dataclass(frozen=True)
class AdapterKeys:
    """The keys a plug-in's factory takes (from its signature)."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    any_key: bool = False
    """The factory takes ``**options`` (or could not be inspected): keys are not checked."""

    @classmethod
    def of(cls, factory: Callable[..., Any]) -> AdapterKeys:
        try:
            parameters = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):
            return cls(any_key=True)
        named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        return cls(
            required=tuple(p.name for p in named if p.default is p.empty),
            optional=tuple(p.name for p in named if p.default is not p.empty),
            any_key=any(p.kind is p.VAR_KEYWORD for p in parameters),
        )


def adapter_problems(
    route: str, kind: str, options: Mapping[str, Any], plugins: Mapping[str, AdapterKeys]
) -> list[Problem]:
    """Whether ``type`` exists and its keys are the ones it takes, with the right types."""
    if kind in BUILTIN_OPTIONS:
        try:
            BUILTIN_OPTIONS[kind].model_validate(dict(options))
        except ValidationError as exc:
            accepted = list(BUILTIN_OPTIONS[kind].model_fields)
            return [_option_problem(route, kind, error, accepted) for error in exc.errors()]
        return []
    if kind in plugins:
        keys = plugins[kind]
        problems = [
            Problem(route, f"adapter.{name}", f"the {kind!r} adapter needs it: add it")
            for name in keys.required
            if name not in options
        ]
        if not keys.any_key:
            known = keys.required + keys.optional
            problems += [
                Problem(
                    route,
                    f"adapter.{name}",
                    f"the {kind!r} adapter takes no such key ({', '.join(known) or 'none'})"
                    + did_you_mean(name, known),
                )
                for name in options
                if name not in known
            ]
        return problems
    available = sorted(BUILTIN_OPTIONS) + sorted(plugins)
    return [
        Problem(
            route,
            "adapter.type",
            f"unknown adapter type {kind!r} (available: {', '.join(available)})"
            + did_you_mean(kind, available),
        )
    ]


def _option_problem(route: str, kind: str, error: Any, accepted: Sequence[str]) -> Problem:
    loc = [str(part) for part in error["loc"]]
    key = "adapter." + ".".join(loc) if loc else "adapter"
    if error["type"] == "missing":
        return Problem(route, key, f"the {kind!r} adapter needs it: add it")
    if error["type"] == "extra_forbidden":
        return Problem(
            route,
            key,
            f"the {kind!r} adapter takes no such key ({', '.join(accepted)})"
            + did_you_mean(loc[-1], accepted),
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    return Problem(route, key, message[:1].lower() + message[1:])
