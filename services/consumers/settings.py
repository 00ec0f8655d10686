"""Consumer settings (``ORDERBRIDGE_CONSUMER_CONFIG``, ``ORDERBRIDGE_METRICS_*``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import OrderbridgeSettings


class ConsumerSettings(OrderbridgeSettings):
    consumer_config: str | None = Field(
        default=None, description="Path of the routes file (TOML or YAML); --config wins."
    )
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9103, ge=0, le=65535, description="0 disables.")
    shutdown_seconds: float = Field(default=30.0, gt=0)
