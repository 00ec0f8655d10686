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
* ``ORDERBRIDGE_LOG_LEVEL`` (``INFO``) and ``ORDERBRIDGE_LOG_FORMAT`` (``json`` | ``console``)
* ``ORDERBRIDGE_STATE_URL`` (``sqlite:///./orderbridge-state.db``): the state store
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.broker import topology


class OrderbridgeSettings(BaseSettings):
    """Base for every settings group: one prefix, unknown variables ignored."""

    model_config = SettingsConfigDict(env_prefix="ORDERBRIDGE_", extra="ignore")


class BrokerSettings(OrderbridgeSettings):
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
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


class LogSettings(OrderbridgeSettings):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"


class StateSettings(OrderbridgeSettings):
    """Where cursors, tokens, leases and processed keys live (``shared.state``).

    ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (one host, WAL),
    ``postgresql://user:password@host/db`` (several replicas) or ``memory://``
    (tests). A secret: a PostgreSQL URL may carry a password.
    """

    state_url: SecretStr = SecretStr("sqlite:///./orderbridge-state.db")

    def redacted_url(self) -> str:
        """The state URL with its password masked, for logs."""
        return redact_url(self.state_url.get_secret_value())


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
