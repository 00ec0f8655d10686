"""Ingress settings (``ORDERBRIDGE_*`` environment variables).

* ``ORDERBRIDGE_INGRESS_HOST`` / ``ORDERBRIDGE_INGRESS_PORT`` (``0.0.0.0`` / 8080): the
  public webhook port; it answers the webhook paths, /healthz, /readyz and /openapi.json
* ``ORDERBRIDGE_METRICS_HOST`` / ``ORDERBRIDGE_METRICS_PORT`` (``0.0.0.0`` / 9104, 0 = off):
  /metrics (and /healthz, /readyz) for Prometheus, kept off the public port
* ``ORDERBRIDGE_INGRESS_MAX_BODY_BYTES`` (16 MiB): a 500-line order with
  100-entry arrays reaches megabytes (api-facts §7.18); above the cap → 413
* ``ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME`` / ``..._PASSWORD`` (Basic) and/or
  ``ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN`` (Bearer): what we gave Tradecloud (api-facts §1.2)
* ``ORDERBRIDGE_APICBASE_WEBHOOK_SECRET``: HMAC key(s), comma-separated for rotation (§5.6)
* ``ORDERBRIDGE_INGRESS_INSECURE_NO_AUTH`` (false): development only; lets a source
  without credentials accept unauthenticated calls (also ``--insecure-no-auth``)
* ``ORDERBRIDGE_INGRESS_FETCH_TIMEOUT_SECONDS`` (10, at most 30): how long one legacy
  GET webhook may spend fetching its document from the Tradecloud API (login,
  retries and backoff included) before it is answered 503 with ``Retry-After``;
  Tradecloud's webhook client gave up after 60 s (api-facts §1.3), and the
  confirmed publish still has to fit after the fetch. The API client of the GET
  path stops its own retries within this budget too (``__main__``)
* ``ORDERBRIDGE_TRADECLOUD_ROLE`` / ``ORDERBRIDGE_ECHO_POLICY``: passed to the order
  normalizers when set; unset means no echo classification (webhook integrations
  usually just do not subscribe to their own events, api-facts §4)
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from services.ingress.fetch import DEFAULT_FETCH_TIMEOUT_SECONDS
from shared.errors import ConfigurationError
from shared.schema.models import EchoPolicy, Role
from shared.settings import OrderbridgeSettings

MiB = 1024 * 1024


class IngressSettings(OrderbridgeSettings):
    ingress_host: str = "0.0.0.0"
    ingress_port: int = Field(default=8080, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9104, ge=0, le=65535, description="0 disables.")
    ingress_max_body_bytes: int = Field(default=16 * MiB, ge=1024)
    ingress_body_timeout_seconds: float = Field(default=30.0, gt=0)
    ingress_insecure_no_auth: bool = False
    ingress_fetch_timeout_seconds: float = Field(
        default=DEFAULT_FETCH_TIMEOUT_SECONDS,
        gt=0,
        le=30,
        description="Budget of one GET webhook's fetch from the Tradecloud API; then 503.",
    )
    tradecloud_webhook_username: str | None = None
    tradecloud_webhook_password: SecretStr | None = None
    tradecloud_webhook_token: SecretStr | None = None
    apicbase_webhook_secret: SecretStr | None = None
    tradecloud_role: Role | None = None
    echo_policy: EchoPolicy | None = None

    @model_validator(mode="after")
    def _basic_needs_both_halves(self) -> IngressSettings:
        if bool(self.tradecloud_webhook_username) != bool(self.tradecloud_webhook_password):
            raise ValueError(
                "set both ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME and "
                "ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD for Basic authentication, or neither"
            )
        return self

    @property
    def tradecloud_configured(self) -> bool:
        return bool(self.tradecloud_webhook_username) or _present(self.tradecloud_webhook_token)

    @property
    def apicbase_configured(self) -> bool:
        return bool(self.apicbase_secrets())

    def apicbase_secrets(self) -> list[bytes]:
        """The HMAC keys, newest first as configured; blanks ignored."""
        if self.apicbase_webhook_secret is None:
            return []
        raw = self.apicbase_webhook_secret.get_secret_value()
        return [part.strip().encode() for part in raw.split(",") if part.strip()]

    def require_credentials(self) -> None:
        """Refuse to run open to the internet by accident.

        At least one source needs credentials unless the insecure development
        flag is given; a source without credentials then refuses every call (401).
        """
        if self.ingress_insecure_no_auth:
            return
        if not (self.tradecloud_configured or self.apicbase_configured):
            raise ConfigurationError(
                "no webhook credentials configured: set ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN "
                "(or ..._USERNAME and ..._PASSWORD) and/or ORDERBRIDGE_APICBASE_WEBHOOK_SECRET; "
                "for local development only, start with --insecure-no-auth"
            )


def _present(secret: SecretStr | None) -> bool:
    return secret is not None and bool(secret.get_secret_value())
