"""Apicbase fetcher settings (``ORDERBRIDGE_*`` environment variables).

* ``ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS`` (300): pause between drains;
  Apicbase asks for periodic polling, not a live backend (api-facts §5.4)
* ``ORDERBRIDGE_APICBASE_FETCH_START``: optional ISO timestamp; only orders
  placed after it are listed until a safety cursor is stored (default: every
  unfetched ORDERED order)
* ``ORDERBRIDGE_APICBASE_FETCH_LOOKBACK_SECONDS`` (86400): the stored safety
  cursor (``ordered_on__gt``) trails the newest fetched order by this much;
  ``fetched_by_supplier=false`` does the real de-duplication, the cursor only
  bounds the list should that filter ever be ignored
* ``ORDERBRIDGE_APICBASE_FETCH_PAGE_SIZE`` (200, the documented maximum)
* ``ORDERBRIDGE_APICBASE_FETCH_LEASE_SECONDS`` (30)
* ``ORDERBRIDGE_METRICS_HOST`` / ``ORDERBRIDGE_METRICS_PORT`` (``0.0.0.0`` / 9102, 0 = off)

The API itself (OAuth client, rate limit, retries) is configured by
``ORDERBRIDGE_APICBASE_*`` (``shared.clients.apicbase.ApicbaseSettings``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, field_validator

from shared.clients.apicbase import MAX_PAGE_SIZE
from shared.settings import OrderbridgeSettings


class FetcherSettings(OrderbridgeSettings):
    apicbase_fetch_interval_seconds: float = Field(default=300.0, gt=0)
    apicbase_fetch_start: datetime | None = None
    apicbase_fetch_lookback_seconds: float = Field(default=86400.0, ge=0)
    apicbase_fetch_page_size: int = Field(default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    apicbase_fetch_lease_seconds: float = Field(default=30.0, ge=3)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="0 disables.")

    @field_validator("apicbase_fetch_start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
