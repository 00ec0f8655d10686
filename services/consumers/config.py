"""Consumer routes from a TOML or YAML file (pure: text in, validated routes out).

```toml
[[routes]]
name = "erp-confirmed"
bindings = ["tradecloud.order.Confirmed.*", "apicbase.order.#"]
shards = 4                       # queues per route (per-document order across replicas)
prefetch = 64                    # unacknowledged messages per shard
retry_delays = [5, 30, 300]      # seconds; then the route's dead-letter queue
delivery_limit = 5               # broker-side redeliveries before dead-lettering
skip_echo = true                 # skip events whose changed lines are all echoes
adapter_timeout = 30             # seconds one adapter call may take
[routes.filter]                  # optional; all given conditions must hold
kinds = ["order"]
event_names = ["OrderLinesConfirmedBySupplier"]
line_process_statuses = ["Confirmed"]      # at least one (changed) line has one of these
[routes.adapter]
type = "file"                    # file | http | postgres | an orderbridge.adapters plug-in
path = "./erp-inbox"             # the adapter's own settings follow

[[routes]]
name = "purchasing-proposals"    # open supplier proposals go to purchasing
bindings = ["tradecloud.order.#"]
[routes.filter]                  # line conditions hold for one and the same (changed) line
line_in_progress_statuses = ["OpenSupplierProposal"]
request_sides = ["supplier"]     # request conditions hold for one request of that line
request_kinds = ["proposal"]     # snake_case as in the event: proposal, reopen_request
request_statuses = ["Open"]
[routes.adapter]
type = "file"
path = "./purchasing-inbox"
```

String values may use ``${ENV_VAR}`` (e.g. tokens in HTTP headers): secrets stay
out of the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from services.consumers.validate import (
    AdapterKeys,
    KnownValues,
    Problem,
    adapter_problems,
    did_you_mean,
    filter_problems,
)
from shared.errors import ConfigurationError, UsageError

ROUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PATTERN_WORD = re.compile(r"^([A-Za-z0-9_-]+|\*|#)$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RouteFilter(BaseModel):
    """Conditions an event must meet for a route; every given one must hold.

    ``kinds`` and ``event_names`` are about the event. The others are about one
    line: an event passes when one of its changed lines (every line when none is
    marked changed) meets every given line condition: its process status, its
    in-progress status, and (when any ``request_*`` key is given) one of its
    requests meeting every given request condition. So ``request_sides =
    ["supplier"]``, ``request_kinds = ["proposal"]``, ``request_statuses =
    ["Open"]`` means "a changed line carries an open supplier proposal".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: tuple[str, ...] = ()
    event_names: tuple[str, ...] = ()
    line_process_statuses: tuple[str, ...] = ()
    line_in_progress_statuses: tuple[str, ...] = ()
    """``OrderLine.in_progress_status`` (Tradecloud ``inProgressStatus``, open-ended)."""
    request_sides: tuple[str, ...] = ()
    """``Request.side``: ``buyer`` or ``supplier`` (who asks)."""
    request_kinds: tuple[str, ...] = ()
    """``Request.kind``: ``proposal``, ``reopen_request`` or another snake_case kind."""
    request_statuses: tuple[str, ...] = ()
    """``Request.status``: ``Open``, ``Approved``, ``Rejected``… (open-ended)."""

    @property
    def on_requests(self) -> bool:
        """Whether a line must carry a request meeting the ``request_*`` conditions."""
        return bool(self.request_sides or self.request_kinds or self.request_statuses)

    @property
    def on_lines(self) -> bool:
        """Whether some (changed) line must meet line conditions."""
        return bool(
            self.line_process_statuses or self.line_in_progress_statuses or self.on_requests
        )


class AdapterConfig(BaseModel):
    """``type`` picks the adapter; every other key is the adapter's own setting."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    bindings: tuple[str, ...] = Field(min_length=1)
    adapter: AdapterConfig
    filter: RouteFilter = RouteFilter()
    shards: int = Field(default=4, ge=1, le=64)
    prefetch: int = Field(default=64, ge=1, le=10_000)
    retry_delays: tuple[float, ...] = (5.0, 30.0, 300.0)
    delivery_limit: int = Field(default=5, ge=1)
    skip_echo: bool = True
    adapter_timeout: float = Field(default=30.0, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ROUTE_NAME.match(value):
            raise ValueError("lowercase letters, digits, '-' and '_' (it names queues)")
        return value

    @field_validator("bindings")
    @classmethod
    def _bindings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            words = pattern.split(".")
            if not all(_PATTERN_WORD.match(word) for word in words):
                raise ValueError(f"{pattern!r} is not a topic pattern (words, '*' or '#')")
        return value

    @field_validator("retry_delays")
    @classmethod
    def _delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay <= 0 for delay in value):
            raise ValueError("retry delays are positive seconds")
        return value


class ConsumerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: tuple[Route, ...] = Field(min_length=1)
    known_values: KnownValues = KnownValues()
    """Event names, statuses and request kinds Tradecloud added after this release."""

    @field_validator("routes")
    @classmethod
    def _unique(cls, value: tuple[Route, ...]) -> tuple[Route, ...]:
        names = [route.name for route in value]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ValueError(f"route names must be unique: {sorted(duplicates)}")
        return value

    def route(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name:
                return route
        known = ", ".join(route.name for route in self.routes)
        raise UsageError(f"no route named {name!r} (routes: {known})")


def parse_config(
    text: str,
    *,
    fmt: str,
    env: Mapping[str, str] | None = None,
    source: str = "consumer config",
    plugins: Mapping[str, AdapterKeys] | None = None,
) -> ConsumerConfig:
    """``fmt`` is ``toml`` or ``yaml``; ``${VAR}`` expands from ``env`` (default os.environ).

    Checks everything before anything connects (``services.consumers.validate``):
    one ``ConfigurationError`` names ``source`` (the file), then each problem's
    route and key. ``plugins`` are the installed plug-in adapters' keys.
    """
    try:
        raw = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigurationError(f"{source} is not valid {fmt.upper()}: {reason}") from None
    missing: list[tuple[tuple[str | int, ...], str]] = []
    expanded = _expand(raw, os.environ if env is None else env, (), missing)
    if missing:
        _fail(
            source,
            [
                Problem(
                    _route_name(raw, loc),
                    _key(loc),
                    f"uses ${{{name}}}, which is not set: set the variable or write the value",
                )
                for loc, name in missing
            ],
        )
    try:
        config = ConsumerConfig.model_validate(expanded)
    except ValidationError as exc:
        _fail(source, [_problem(raw, error) for error in exc.errors()])
    problems: list[Problem] = []
    for route in config.routes:
        problems += filter_problems(route.name, route.filter, config.known_values)
        problems += adapter_problems(
            route.name, route.adapter.type, route.adapter.options(), plugins or {}
        )
    if problems:
        _fail(source, problems)
    return config


def load_config(
    path: str | Path, *, plugins: Mapping[str, AdapterKeys] | None = None
) -> ConsumerConfig:
    """The routes file at ``path``, checked against the installed plug-in adapters."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the routes file {file}: {exc.strerror or exc} "
            "(--config or ORDERBRIDGE_CONSUMER_CONFIG)"
        ) from None
    if plugins is None:
        from services.consumers.adapters import plugin_adapters

        plugins = plugin_adapters()
    fmt = "yaml" if file.suffix.lower() in (".yaml", ".yml") else "toml"
    return parse_config(text, fmt=fmt, source=str(file), plugins=plugins)


def _fail(source: str, problems: Sequence[Problem]) -> NoReturn:
    raise ConfigurationError(f"{source}: " + "; ".join(str(problem) for problem in problems))


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    """The keys allowed where ``loc`` points (for "did you mean")."""
    model: type[BaseModel] = ConsumerConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = _model_of(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _problem(raw: Any, error: ErrorDetails) -> Problem:
    loc = tuple(error["loc"])
    route = _route_name(raw, loc)
    key = _key(loc)
    if error["type"] == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        return Problem(
            route,
            key,
            f"unknown key (known: {', '.join(allowed)})" + did_you_mean(str(loc[-1]), allowed),
        )
    if error["type"] == "missing":
        return Problem(route, key, "required: add it")
    message = str(error["msg"]).removeprefix("Value error, ")
    return Problem(route, key, message[:1].lower() + message[1:])


def _route_name(raw: Any, loc: Sequence[str | int]) -> str | None:
    if len(loc) < 2 or loc[0] != "routes" or not isinstance(loc[1], int):
        return None
    try:
        name = raw["routes"][loc[1]].get("name")
    except (TypeError, KeyError, IndexError, AttributeError):
        name = None
    return name if isinstance(name, str) else f"#{loc[1] + 1}"


def _key(loc: Sequence[str | int]) -> str:
    """The key path within its route (``filter.kinds``), or from the top of the file."""
    rest = loc[2:] if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int) else loc
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest).lstrip(
        "."
    )


def _expand(
    value: Any,
    env: Mapping[str, str],
    loc: tuple[str | int, ...],
    missing: list[tuple[tuple[str | int, ...], str]],
) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                missing.append((loc, name))
                return match.group(0)
            return env[name]

        return _ENV.sub(replace, value)
    if isinstance(value, Mapping):
        return {key: _expand(item, env, (*loc, key), missing) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_expand(item, env, (*loc, index), missing) for index, item in enumerate(value)]
    return value
