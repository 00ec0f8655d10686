"""Settings from ``ORDERBRIDGE_*`` environment variables (pydantic-settings).

Each service builds the groups it needs once, in its composition root, and
passes them down; nothing deeper reads the environment. Secrets are
``SecretStr``: they print as ``**********`` in logs, errors and reprs.

Environment variables introduced here:

* ``ORDERBRIDGE_AMQP_URL`` (default ``amqp://guest:guest@localhost:5672/``)
* ``ORDERBRIDGE_PUBLISH_TIMEOUT_SECONDS`` (5): confirm deadline per publish
* ``ORDERBRIDGE_PUBLISH_MAX_IN_FLIGHT`` (1024): unconfirmed publishes per process
* ``ORDERBRIDGE_PUBLISH_MAX_WAITING`` (4096): publishes queued for a slot before load is shed
* ``ORDERBRIDGE_ARCHIVE_MAX_AGE`` (``7D``) and ``ORDERBRIDGE_ARCHIVE_MAX_BYTES`` (5 GB)
* ``ORDERBRIDGE_LOG_LEVEL`` (``INFO``, any case) and ``ORDERBRIDGE_LOG_FORMAT``
  (``auto``: readable text on a terminal, JSON lines otherwise | ``json`` | ``console``)
* ``ORDERBRIDGE_STATE_URL`` (``sqlite:///./orderbridge-state.db``): the state store
* ``ORDERBRIDGE_STARTUP_WAIT_SECONDS`` (30): how long a service waits at start for
  RabbitMQ and the state store before it gives up (exit code 69)
* ``ORDERBRIDGE_SECRETS_DIR`` (``/run/secrets``): where Docker secrets are read from

**Secrets from files.** Every secret (a ``SecretStr`` field, e.g.
``ORDERBRIDGE_AMQP_URL``) can also come from ``ORDERBRIDGE_<NAME>_FILE``, the
path of a file whose stripped content is the value, or from a Docker secret
``/run/secrets/orderbridge_<name>`` (the variable name in lowercase). Setting
both the variable and its ``_FILE`` twin is an error; the variable wins over a
Docker secret.

**Errors name variables.** An invalid value raises ``SettingsError`` (a
``ConfigurationError``) whose message names the environment variable and how
to fix it, never the Python field: ``ORDERBRIDGE_INGRESS_PORT='abc' is
invalid: …``.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from shared.broker import topology
from shared.errors import ConfigurationError

PREFIX = "ORDERBRIDGE_"
DEFAULT_SECRETS_DIR = "/run/secrets"
"""Where Docker (and Kubernetes, when mounted there) put secrets."""


def variable(field: str) -> str:
    """The environment variable of a settings field: ``amqp_url`` → ``ORDERBRIDGE_AMQP_URL``."""
    return f"{PREFIX}{field.upper()}"


def is_secret(annotation: Any) -> bool:
    """Whether a field's type is ``SecretStr`` (also inside ``SecretStr | None``)."""
    if annotation is SecretStr:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(is_secret(arg) for arg in get_args(annotation))
    return False


class SettingsError(ConfigurationError):
    """An environment variable with a value that cannot work; the message names it."""

    def __init__(self, message: str, *, variables: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.variables = variables


class SecretFiles(PydanticBaseSettingsSource):
    """``ORDERBRIDGE_<NAME>_FILE`` for every secret field: the stripped file content."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = {key.upper(): value for key, value in environ.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not is_secret(field.annotation):
                continue
            plain, file_variable = variable(name), f"{variable(name)}_FILE"
            path = self._environ.get(file_variable)
            if not path:
                continue
            if self._environ.get(plain):
                raise SettingsError(
                    f"both {plain} and {file_variable} are set: keep one (unset {plain} "
                    f"to read the value from {path})",
                    variables=(plain, file_variable),
                )
            try:
                values[name] = Path(path).read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise SettingsError(
                    f"{file_variable}={path}: cannot read the file ({reason}); "
                    f"point it at a readable file or set {plain} instead",
                    variables=(file_variable,),
                ) from None
        return values


class OrderbridgeSettings(BaseSettings):
    """Base for every settings group: one prefix, unknown variables ignored.

    Sources, first wins: constructor arguments, ``ORDERBRIDGE_<NAME>_FILE`` (secrets),
    ``ORDERBRIDGE_<NAME>``, Docker secrets in ``ORDERBRIDGE_SECRETS_DIR``.
    """

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            SecretFiles(settings_cls, os.environ),
            env_settings,
        ]
        secrets_dir = Path(os.environ.get(f"{PREFIX}SECRETS_DIR") or DEFAULT_SECRETS_DIR)
        if secrets_dir.is_dir():
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        return tuple(sources)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise settings_error(exc, type(self)) from None


def settings_error(exc: ValidationError, settings_cls: type[BaseSettings]) -> SettingsError:
    """One line naming each offending variable, its value (unless secret) and the fix."""
    problems = [_problem(error, settings_cls) for error in exc.errors()]
    named = tuple(
        variable(str(error["loc"][0]))
        for error in exc.errors()
        if error["loc"] and str(error["loc"][0]) in settings_cls.model_fields
    )
    return SettingsError("; ".join(problems), variables=named)


def _problem(error: ErrorDetails, settings_cls: type[BaseSettings]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    loc = error["loc"]
    if not loc or str(loc[0]) not in settings_cls.model_fields:
        return message
    name = str(loc[0])
    field = settings_cls.model_fields[name]
    what = variable(name) + "".join(f"[{part}]" for part in loc[1:])
    if is_secret(field.annotation):
        shown = what
    else:
        value = error.get("input")
        shown = f"{what}={str(value)[:60]!r}" if isinstance(value, str | int | float) else what
    if error["type"] == "missing":
        return f"{what} is required: set it"
    fix = "fix it"
    if not field.is_required() and field.default is not None and not is_secret(field.annotation):
        fix = f"fix it or unset it for the default ({_default_text(field.default)})"
    first, rest = message[:1], message[1:]
    return f"{shown} is invalid: {first.lower()}{rest}; {fix}"


def _default_text(default: Any) -> str:
    if isinstance(default, list | tuple):
        return ",".join(str(item) for item in default)
    return str(default)


def _startup_wait() -> Any:
    """``ORDERBRIDGE_STARTUP_WAIT_SECONDS``, read by the broker and the state settings alike."""
    return Field(
        default=30.0,
        ge=0,
        description="How long a service waits at start for this dependency before it exits 69.",
    )


class BrokerSettings(OrderbridgeSettings):
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    startup_wait_seconds: float = _startup_wait()
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    publish_max_in_flight: int = Field(default=1024, ge=1)
    publish_max_waiting: int = Field(default=4096, ge=0)
    archive_max_age: str = topology.DEFAULT_ARCHIVE_MAX_AGE
    archive_max_bytes: int = Field(default=topology.DEFAULT_ARCHIVE_MAX_BYTES, gt=0)

    def topology(self) -> topology.Topology:
        return topology.core_topology(
            archive_max_age=self.archive_max_age, archive_max_bytes=self.archive_max_bytes
        )

    def redacted_url(self) -> str:
        """The broker URL with its password masked, for logs."""
        return redact_url(self.amqp_url.get_secret_value())


LogFormat = Literal["auto", "json", "console"]


class LogSettings(OrderbridgeSettings):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = "auto"

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        level = value.strip().upper()
        return "WARNING" if level == "WARN" else level

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class StateSettings(OrderbridgeSettings):
    """Where cursors, tokens, leases and processed keys live (``shared.state``).

    ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (one host, WAL),
    ``postgresql://user:password@host/db`` (several replicas) or ``memory://``
    (tests). A secret: a PostgreSQL URL may carry a password.
    """

    state_url: SecretStr = SecretStr("sqlite:///./orderbridge-state.db")
    startup_wait_seconds: float = _startup_wait()

    def redacted_url(self) -> str:
        """The state URL with its password masked, for logs."""
        return redact_url(self.state_url.get_secret_value())


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
