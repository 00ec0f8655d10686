"""PostgreSQL adapter: upsert into ERP staging tables, exactly once.

Tables (created on first use in the ERP database named by ``url``):

* ``erp_orders`` — one row per (source, document_id): header, statuses, version;
* ``erp_order_lines`` — one row per (source, document_id, line_key): item,
  first delivery date and quantity, net price, statuses, the line's stamp;
* ``erp_shipments`` — one row per (source, document_id), lines as JSONB (each
  entry with its ``line_key``; a line that changed replaces its entry, the
  others stay; a newer header brings the shipment's current set of lines);
* ``erp_order_documents`` — one row per attached document (source,
  document_id, document_key): who attached it, on which line, its object id
  or URL, name and type (order-documents events; the file is fetched apart).

Only what the route's policy found news, and the ledger confirmed under the
document's lock, is written: the header row when the header applies, the rows
of the lines (documents) that apply. Rows never move backwards even so: a
header updates only for an equal or newer version (a shipment for an equal or
newer stamp), a line only for an equal or newer ``last_updated_at``; stamps
are stored as instants, a zone-less one read as UTC (defence in depth).

The route's ledger (deliveries and applied parts; the tables of
``shared.state.postgres``) lives in the same database and is written **in the
same transaction** as the rows, after deciding again under the document's
lock: a crash between the effect and the record cannot happen, so the effect
is exactly once even across crashes. An ERP import job reads the staging tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.consumers.adapters import Application
from shared.applied import HEADER, Item, event_items, instant, line_key
from shared.errors import ConfigurationError, RetryableError
from shared.schema.models import CanonicalEvent, OrderLine, ShipmentLine
from shared.state import postgres as ledger
from shared.state.port import AppliedDocument, Lookup, Record

STAGING = """
CREATE TABLE IF NOT EXISTS erp_orders (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    document_number TEXT,
    version BIGINT,
    process_status TEXT,
    logistics_status TEXT,
    buyer_account_number TEXT,
    supplier_account_number TEXT,
    last_updated_at TIMESTAMPTZ,
    event_id TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, document_id));
CREATE TABLE IF NOT EXISTS erp_order_lines (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    line_key TEXT NOT NULL,
    position TEXT,
    item_number TEXT,
    item_name TEXT,
    delivery_date TEXT,
    quantity NUMERIC,
    net_price NUMERIC,
    currency TEXT,
    process_status TEXT,
    logistics_status TEXT,
    last_updated_at TIMESTAMPTZ,
    version BIGINT,
    event_id TEXT NOT NULL,
    PRIMARY KEY (source, document_id, line_key));
CREATE TABLE IF NOT EXISTS erp_order_documents (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    document_key TEXT NOT NULL,
    owner TEXT,
    line_position TEXT,
    object_id TEXT,
    url TEXT,
    name TEXT,
    description TEXT,
    type TEXT,
    version BIGINT,
    event_id TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, document_id, document_key));
CREATE TABLE IF NOT EXISTS erp_shipments (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    shipment_number TEXT,
    version BIGINT,
    process_status TEXT,
    logistics_status TEXT,
    lines JSONB NOT NULL,
    last_updated_at TIMESTAMPTZ,
    event_id TEXT NOT NULL,
    PRIMARY KEY (source, document_id));
"""

_ORDER = """
INSERT INTO erp_orders AS o (source, document_id, document_number, version, process_status,
    logistics_status, buyer_account_number, supplier_account_number, last_updated_at, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (source, document_id) DO UPDATE SET
    document_number = EXCLUDED.document_number,
    version = GREATEST(o.version, EXCLUDED.version),
    process_status = EXCLUDED.process_status, logistics_status = EXCLUDED.logistics_status,
    buyer_account_number = EXCLUDED.buyer_account_number,
    supplier_account_number = EXCLUDED.supplier_account_number,
    last_updated_at = GREATEST(o.last_updated_at, EXCLUDED.last_updated_at),
    event_id = EXCLUDED.event_id, applied_at = now()
WHERE o.version IS NULL OR EXCLUDED.version IS NULL OR EXCLUDED.version >= o.version
"""

_LINE = """
INSERT INTO erp_order_lines (source, document_id, line_key, position, item_number, item_name,
    delivery_date, quantity, net_price, currency, process_status, logistics_status,
    last_updated_at, version, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (source, document_id, line_key) DO UPDATE SET
    position = EXCLUDED.position, item_number = EXCLUDED.item_number,
    item_name = EXCLUDED.item_name, delivery_date = EXCLUDED.delivery_date,
    quantity = EXCLUDED.quantity, net_price = EXCLUDED.net_price, currency = EXCLUDED.currency,
    process_status = EXCLUDED.process_status, logistics_status = EXCLUDED.logistics_status,
    last_updated_at = EXCLUDED.last_updated_at, version = EXCLUDED.version,
    event_id = EXCLUDED.event_id
WHERE erp_order_lines.last_updated_at IS NULL OR EXCLUDED.last_updated_at IS NULL
   OR EXCLUDED.last_updated_at >= erp_order_lines.last_updated_at
"""

_SHIPMENT = """
INSERT INTO erp_shipments AS s (source, document_id, shipment_number, version, process_status,
    logistics_status, lines, last_updated_at, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)
ON CONFLICT (source, document_id) DO UPDATE SET
    shipment_number = EXCLUDED.shipment_number, version = EXCLUDED.version,
    process_status = EXCLUDED.process_status, logistics_status = EXCLUDED.logistics_status,
    lines = EXCLUDED.lines, last_updated_at = EXCLUDED.last_updated_at,
    event_id = EXCLUDED.event_id
WHERE s.last_updated_at IS NULL OR EXCLUDED.last_updated_at IS NULL
   OR EXCLUDED.last_updated_at >= s.last_updated_at
"""

_DOCUMENT = """
INSERT INTO erp_order_documents (source, document_id, document_key, owner, line_position,
    object_id, url, name, description, type, version, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (source, document_id, document_key) DO UPDATE SET
    owner = EXCLUDED.owner, line_position = EXCLUDED.line_position,
    object_id = EXCLUDED.object_id, url = EXCLUDED.url, name = EXCLUDED.name,
    description = EXCLUDED.description, type = EXCLUDED.type, version = EXCLUDED.version,
    event_id = EXCLUDED.event_id, applied_at = now()
"""

_SHIPMENT_LINES = """
UPDATE erp_shipments SET lines = $3::jsonb, event_id = $4
WHERE source = $1 AND document_id = $2
"""


class PostgresAdapter:
    def __init__(self, url: str, pool_size: int = 8) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError("postgres adapter: url must be postgresql://…")
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool[Any] | None = None

    async def _ready(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            try:
                pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size)
            except (OSError, asyncpg.PostgresError) as exc:
                raise RetryableError(f"ERP database unreachable: {exc}", retry_after=5) from None
            async with pool.acquire() as conn:
                await ledger.migrate(conn)
                # Replicas start together: CREATE TABLE IF NOT EXISTS races on
                # pg_type, so the staging DDL runs under the migrations' lock.
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", ledger.MIGRATION_LOCK)
                    await conn.execute(STAGING)
            self._pool = pool
        return self._pool

    async def start(self) -> None:
        """Create the staging tables and the ledger before the first event."""
        await self._ready()

    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        pool = await self._ready()
        async with pool.acquire() as conn:
            return await ledger.lookup_in(conn, route, lookups)

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        pool = await self._ready()
        async with pool.acquire() as conn:
            return await ledger.applied_document_in(conn, route, document)

    async def apply(self, item: Application) -> None:
        pool = await self._ready()
        async with pool.acquire() as conn, conn.transaction():
            await _upsert(conn, item, None)

    async def apply_recorded(self, item: Application, record: Record) -> bool:
        pool = await self._ready()
        try:
            async with pool.acquire() as conn, conn.transaction():
                written = await ledger.record_or_raise_in(conn, item.route, record)
                await _upsert(conn, item, set(written))
        except ledger.NothingNew:  # the transaction was rolled back: nothing was applied
            return False
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise RetryableError(f"ERP database: {exc}", retry_after=5) from None
        return True

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


async def _upsert(conn: ledger.Connection, item: Application, written: set[str] | None) -> None:
    """Write what ``item`` applies, narrowed to the parts the ledger wrote (``written``)."""
    event = item.event
    keyed = event_items(event)
    wanted = {key for key, _ in keyed} if item.lines is None else set(item.lines)
    if written is not None:
        wanted &= written
    header = item.header and (written is None or HEADER in written)
    stamp = instant(event.last_updated_at)
    if event.kind == "order_documents":
        await _upsert_documents(conn, event, [(k, i) for k, i in keyed if k in wanted])
    elif event.shipment is not None:
        await _upsert_shipment(conn, event, keyed, wanted, header, stamp)
    elif event.order is not None:
        if header:
            await conn.execute(
                _ORDER,
                event.source,
                event.document_id,
                event.document_number,
                event.version,
                event.process_status,
                event.logistics_status,
                event.order.buyer.account_number,
                event.order.supplier.account_number,
                stamp,
                event.event_id,
            )
        rows = [
            _line_row(event, key, line)
            for key, line in keyed
            if key in wanted and isinstance(line, OrderLine)
        ]
        if rows:
            await conn.executemany(_LINE, rows)


async def _upsert_documents(
    conn: ledger.Connection, event: CanonicalEvent, documents: list[tuple[str, Item]]
) -> None:
    rows = [
        (
            event.source,
            event.document_id,
            key,
            doc["owner"],
            doc["line_position"],
            doc["object_id"],
            doc["url"],
            doc["name"],
            doc["description"],
            doc["type"],
            event.version,
            event.event_id,
        )
        for key, doc in documents
        if isinstance(doc, dict)
    ]
    if rows:
        await conn.executemany(_DOCUMENT, rows)


async def _upsert_shipment(
    conn: ledger.Connection,
    event: CanonicalEvent,
    keyed: list[tuple[str, Item]],
    wanted: set[str],
    header: bool,
    stamp: datetime | None,
) -> None:
    """The lines that apply replace their entries; a newer header brings the current set."""
    assert event.shipment is not None
    current = await conn.fetchval(
        "SELECT lines FROM erp_shipments WHERE source = $1 AND document_id = $2 FOR UPDATE",
        event.source,
        event.document_id,
    )
    stored: dict[str, Any] = {}
    for index, entry in enumerate(orjson.loads(current) if current is not None else []):
        stored[entry.get("line_key") or _stored_line_key(entry, index)] = entry
    entries = {
        key: {**line.model_dump(mode="json"), "line_key": key}
        for key, line in keyed
        if isinstance(line, ShipmentLine)
    }
    if header or current is None:
        # The shipment as of this state: its lines, changed ones new, the others as kept.
        merged = [
            entries[key] if key in wanted else stored.get(key, entries[key]) for key, _ in keyed
        ]
        await conn.execute(
            _SHIPMENT,
            event.source,
            event.document_id,
            event.shipment.shipment_number,
            event.version,
            event.process_status,
            event.logistics_status,
            orjson.dumps(merged).decode(),
            stamp,
            event.event_id,
        )
        return
    stored.update({key: entry for key, entry in entries.items() if key in wanted})
    lines = orjson.dumps(list(stored.values())).decode()
    await conn.execute(_SHIPMENT_LINES, event.source, event.document_id, lines, event.event_id)


def _stored_line_key(entry: Any, index: int) -> str:
    """The key of a line stored before entries carried their ``line_key``."""
    return line_key(ShipmentLine.model_validate(entry), index)


def _line_row(event: CanonicalEvent, key: str, line: Any) -> tuple[Any, ...]:
    entry = line.delivery_schedule[0] if line.delivery_schedule else None
    net = line.prices["net"] if line.prices and line.prices.get("net") else None
    money = net["transaction"] if net else None
    return (
        event.source,
        event.document_id,
        key,
        line.position,
        line.item["number"],
        line.item["name"],
        entry["date"]["text"] if entry and entry["date"] else None,
        entry["quantity"] if entry else None,
        money["value"] if money else None,
        money["currency"] if money else None,
        line.process_status,
        line.logistics_status,
        instant(line.last_updated_at),
        event.version,
        event.event_id,
    )
