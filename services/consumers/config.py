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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import ConfigurationError, UsageError

ROUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PATTERN_WORD = re.compile(r"^([A-Za-z0-9_-]+|\*|#)$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


_REQUEST_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
REQUEST_SIDES = ("buyer", "supplier")


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

    @field_validator("request_sides")
    @classmethod
    def _sides(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [side for side in value if side not in REQUEST_SIDES]
        if unknown:
            raise ValueError(f"request sides are buyer or supplier, not {unknown}")
        return value

    @field_validator("request_kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [kind for kind in value if not _REQUEST_KIND.match(kind)]
        if unknown:
            raise ValueError(
                f"request kinds are snake_case as in the event (proposal, reopen_request), "
                f"not {unknown}"
            )
        return value

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


def parse_config(text: str, *, fmt: str, env: Mapping[str, str] | None = None) -> ConsumerConfig:
    """``fmt`` is ``toml`` or ``yaml``; ``${VAR}`` expands from ``env`` (default os.environ)."""
    try:
        raw = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"consumer config is not valid {fmt.upper()}: {exc}") from None
    expanded = _expand(raw, os.environ if env is None else env)
    try:
        return ConsumerConfig.model_validate(expanded)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"consumer config: {problems}") from None


def load_config(path: str | Path) -> ConsumerConfig:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read consumer config {file}: {exc}") from None
    fmt = "yaml" if file.suffix.lower() in (".yaml", ".yml") else "toml"
    return parse_config(text, fmt=fmt)


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigurationError(f"consumer config uses ${{{name}}}, which is not set")
            return env[name]

        return _ENV.sub(replace, value)
    if isinstance(value, Mapping):
        return {key: _expand(item, env) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_expand(item, env) for item in value]
    return value
