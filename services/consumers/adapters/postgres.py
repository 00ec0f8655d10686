"""PostgreSQL adapter: upsert into ERP staging tables, exactly once.

Tables (created on first use in the ERP database named by ``url``):

* ``erp_orders`` — one row per (source, document_id): header, statuses, version,
  the buyer and supplier parties as JSONB (``buyer``, ``supplier``: address,
  contact, properties, notes, labels, custom labels) and the order's own
  ``custom_labels`` (JSONB);
* ``erp_order_lines`` — one row per (source, document_id, line_key): item,
  first delivery date and quantity, net price, statuses (``in_progress_status``
  too), the line's stamp; as JSONB ``charge_lines`` (the buyer's, as issued),
  ``issued`` and ``confirmed`` (the buyer's issued and the agreed line: schedule,
  prices, charge lines) and ``buyer`` / ``supplier`` (each side's description,
  properties, notes, labels);
* ``erp_order_line_requests`` — one row per (source, document_id, line_key,
  side, kind): the line's requests, both sides, open and answered (status,
  reason; ``delivery_schedule``, ``prices`` and ``charge_lines`` as JSONB). A
  line that applies replaces its requests: a request it no longer carries is
  deleted;
* ``erp_shipments`` — one row per (source, document_id), lines as JSONB (each
  entry with its ``line_key``; a line that changed replaces its entry, the
  others stay; a newer header brings the shipment's current set of lines);
* ``erp_order_documents`` — one row per attached document (source,
  document_id, document_key): who attached it, on which line (position and
  Tradecloud ``line_id``), its object id or URL, name, type, code and revision
  (the file is fetched apart). From
  order-documents events, and from order events: the order's documents when the
  header applies, a line's (``line_key`` set) when the line applies. Documents
  are attachments: a row is updated, never deleted.

Amounts in JSONB columns are JSON strings as in the event (``"3.045370369287037036"``),
so they stay exact; NUMERIC columns hold them exactly too. The tables are created
at start under the migrations' advisory lock; columns added later are added to an
existing table there (``STAGING_COLUMNS``), so an older database gains them.

Only what the route's policy found news, and the ledger confirmed under the
document's lock, is written: the header row when the header applies, the rows
of the lines (documents) that apply. Rows never move backwards even so: a
header updates only for an equal or newer version (a shipment for an equal or
newer stamp), a line only for an equal or newer ``last_updated_at`` (its requests
and documents only when its row was written, the order's documents only with its
header row); stamps are stored as instants, a zone-less one read as UTC (defence
in depth).

The route's ledger (deliveries and applied parts; the tables of
``shared.state.postgres``) lives in the same database and is written **in the
same transaction** as the rows, after deciding again under the document's
lock: a crash between the effect and the record cannot happen, so the effect
is exactly once even across crashes. An ERP import job reads the staging tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

from services.consumers.adapters import Application
from shared.applied import HEADER, Item, document_ref_key, event_items, instant, line_key
from shared.errors import ConfigurationError, RetryableError
from shared.schema.models import CanonicalEvent, OrderLine, ShipmentLine, fixed_point
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
CREATE TABLE IF NOT EXISTS erp_order_line_requests (
    source TEXT NOT NULL,
    document_id TEXT NOT NULL,
    line_key TEXT NOT NULL,
    side TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT,
    reason TEXT,
    delivery_schedule JSONB,
    prices JSONB,
    charge_lines JSONB,
    version BIGINT,
    event_id TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, document_id, line_key, side, kind));
"""

STAGING_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("erp_orders", "buyer", "JSONB"),
    ("erp_orders", "supplier", "JSONB"),
    ("erp_orders", "custom_labels", "JSONB"),
    ("erp_order_lines", "in_progress_status", "TEXT"),
    ("erp_order_lines", "charge_lines", "JSONB"),
    ("erp_order_lines", "issued", "JSONB"),
    ("erp_order_lines", "confirmed", "JSONB"),
    ("erp_order_lines", "buyer", "JSONB"),
    ("erp_order_lines", "supplier", "JSONB"),
    ("erp_order_documents", "line_key", "TEXT"),
    ("erp_order_documents", "code", "TEXT"),
    ("erp_order_documents", "revision", "TEXT"),
    ("erp_order_documents", "line_id", "TEXT"),
)
"""Columns added after the tables were first created: (table, column, type)."""

_PRESENT_COLUMNS = """
SELECT table_name::text, column_name::text FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
"""

_ORDER = """
INSERT INTO erp_orders AS o (source, document_id, document_number, version, process_status,
    logistics_status, buyer_account_number, supplier_account_number, last_updated_at, event_id,
    buyer, supplier, custom_labels)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13::jsonb)
ON CONFLICT (source, document_id) DO UPDATE SET
    document_number = EXCLUDED.document_number,
    version = GREATEST(o.version, EXCLUDED.version),
    process_status = EXCLUDED.process_status, logistics_status = EXCLUDED.logistics_status,
    buyer_account_number = EXCLUDED.buyer_account_number,
    supplier_account_number = EXCLUDED.supplier_account_number,
    buyer = EXCLUDED.buyer, supplier = EXCLUDED.supplier,
    custom_labels = EXCLUDED.custom_labels,
    last_updated_at = GREATEST(o.last_updated_at, EXCLUDED.last_updated_at),
    event_id = EXCLUDED.event_id, applied_at = now()
WHERE o.version IS NULL OR EXCLUDED.version IS NULL OR EXCLUDED.version >= o.version
"""

_LINE = """
INSERT INTO erp_order_lines (source, document_id, line_key, position, item_number, item_name,
    delivery_date, quantity, net_price, currency, process_status, logistics_status,
    last_updated_at, version, event_id, in_progress_status, charge_lines, confirmed, buyer,
    supplier, issued)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::jsonb,
    $18::jsonb, $19::jsonb, $20::jsonb, $21::jsonb)
ON CONFLICT (source, document_id, line_key) DO UPDATE SET
    position = EXCLUDED.position, item_number = EXCLUDED.item_number,
    item_name = EXCLUDED.item_name, delivery_date = EXCLUDED.delivery_date,
    quantity = EXCLUDED.quantity, net_price = EXCLUDED.net_price, currency = EXCLUDED.currency,
    process_status = EXCLUDED.process_status, logistics_status = EXCLUDED.logistics_status,
    last_updated_at = EXCLUDED.last_updated_at, version = EXCLUDED.version,
    event_id = EXCLUDED.event_id, in_progress_status = EXCLUDED.in_progress_status,
    charge_lines = EXCLUDED.charge_lines, confirmed = EXCLUDED.confirmed,
    buyer = EXCLUDED.buyer, supplier = EXCLUDED.supplier, issued = EXCLUDED.issued
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
    object_id, url, name, description, type, version, event_id, code, revision, line_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (source, document_id, document_key) DO UPDATE SET
    owner = EXCLUDED.owner, line_position = EXCLUDED.line_position,
    object_id = EXCLUDED.object_id, url = EXCLUDED.url, name = EXCLUDED.name,
    description = EXCLUDED.description, type = EXCLUDED.type, version = EXCLUDED.version,
    event_id = EXCLUDED.event_id, applied_at = now(), code = EXCLUDED.code,
    revision = EXCLUDED.revision, line_id = EXCLUDED.line_id
"""

_LINE_PARTS = """
WITH written AS (  -- the lines this event wrote (an older stamp leaves a row as it was)
    SELECT line_key FROM erp_order_lines
    WHERE source = $1::text AND document_id = $2::text AND line_key = ANY($3::text[])
      AND event_id = $4::text
), incoming AS (
    SELECT r.* FROM jsonb_to_recordset($6::jsonb) AS r(line_key TEXT, side TEXT, kind TEXT,
        status TEXT, reason TEXT, delivery_schedule JSONB, prices JSONB, charge_lines JSONB)
    WHERE r.line_key IN (SELECT line_key FROM written)
), gone AS (  -- requests a written line no longer carries
    DELETE FROM erp_order_line_requests q
    WHERE q.source = $1::text AND q.document_id = $2::text
      AND q.line_key IN (SELECT line_key FROM written)
      AND NOT EXISTS (SELECT 1 FROM incoming i
                      WHERE i.line_key = q.line_key AND i.side = q.side AND i.kind = q.kind)
), requests AS (
    INSERT INTO erp_order_line_requests (source, document_id, line_key, side, kind, status,
        reason, delivery_schedule, prices, charge_lines, version, event_id)
    SELECT $1::text, $2::text, i.line_key, i.side, i.kind, i.status, i.reason,
        i.delivery_schedule, i.prices, i.charge_lines, $5::bigint, $4::text
    FROM incoming i
    ON CONFLICT (source, document_id, line_key, side, kind) DO UPDATE SET
        status = EXCLUDED.status, reason = EXCLUDED.reason,
        delivery_schedule = EXCLUDED.delivery_schedule, prices = EXCLUDED.prices,
        charge_lines = EXCLUDED.charge_lines, version = EXCLUDED.version,
        event_id = EXCLUDED.event_id, applied_at = now()
)
INSERT INTO erp_order_documents (source, document_id, document_key, line_key, owner,
    line_position, line_id, object_id, url, name, description, type, code, revision, version,
    event_id)
SELECT $1::text, $2::text, d.document_key, d.line_key, d.owner, d.line_position, d.line_id,
    d.object_id, d.url, d.name, d.description, d.type, d.code, d.revision, $5::bigint, $4::text
FROM jsonb_to_recordset($7::jsonb) AS d(document_key TEXT, line_key TEXT, owner TEXT,
    line_position TEXT, line_id TEXT, object_id TEXT, url TEXT, name TEXT, description TEXT,
    type TEXT, code TEXT, revision TEXT)
WHERE d.line_key IN (SELECT line_key FROM written)
   OR (d.line_key IS NULL AND EXISTS (
        SELECT 1 FROM erp_orders o
        WHERE o.source = $1::text AND o.document_id = $2::text AND o.event_id = $4::text))
ON CONFLICT (source, document_id, document_key) DO UPDATE SET
    line_key = EXCLUDED.line_key, owner = EXCLUDED.owner,
    line_position = EXCLUDED.line_position, line_id = EXCLUDED.line_id,
    object_id = EXCLUDED.object_id, url = EXCLUDED.url,
    name = EXCLUDED.name, description = EXCLUDED.description, type = EXCLUDED.type,
    code = EXCLUDED.code, revision = EXCLUDED.revision, version = EXCLUDED.version,
    event_id = EXCLUDED.event_id, applied_at = now()
"""
"""A line's requests (replaced) and documents, and the order's documents, in one statement:
only for lines (the header) this event wrote, so they never move backwards either."""

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
                    await _add_columns(conn)
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
                _json(event.order.buyer),
                _json(event.order.supplier),
                _json(event.order.custom_labels),
            )
        lines = [
            (key, line) for key, line in keyed if key in wanted and isinstance(line, OrderLine)
        ]
        if lines:
            await conn.executemany(_LINE, [_line_row(event, key, line) for key, line in lines])
        await _upsert_line_parts(conn, event, lines, header)


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
            doc["code"],
            doc["revision"],
            doc.get("line_id"),
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


async def _add_columns(conn: ledger.Connection) -> None:
    """Add the ``STAGING_COLUMNS`` a table lacks (a database of an earlier release).

    Only missing columns are altered: ``ALTER TABLE`` locks the table exclusively
    even when ``IF NOT EXISTS`` finds the column, and replicas start while others run.
    """
    tables = sorted({table for table, _, _ in STAGING_COLUMNS})
    present = {(row[0], row[1]) for row in await conn.fetch(_PRESENT_COLUMNS, tables)}
    for table, column, kind in STAGING_COLUMNS:
        if (table, column) not in present:
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")


async def _upsert_line_parts(
    conn: ledger.Connection,
    event: CanonicalEvent,
    lines: list[tuple[str, OrderLine]],
    header: bool,
) -> None:
    """The requests and documents of the lines that apply, and the order's documents."""
    assert event.order is not None
    requests: dict[tuple[str, str, str], dict[str, Any]] = {}
    documents: dict[str, dict[str, Any]] = {}
    if header:
        for index, doc in enumerate(event.order.documents):
            documents[document_ref_key(doc, index)] = {**doc, "line_key": None}
    for key, line in lines:
        for request in line.requests:  # one row per side and kind; a repeat replaces it
            requests[key, request["side"], request["kind"]] = {**request, "line_key": key}
        for index, doc in enumerate(line.documents):
            documents[document_ref_key(doc, index)] = {**doc, "line_key": key}
    if not lines and not documents:
        return
    await conn.execute(
        _LINE_PARTS,
        event.source,
        event.document_id,
        [key for key, _ in lines],
        event.event_id,
        event.version,
        _json(list(requests.values())),
        _json([{**doc, "document_key": key} for key, doc in documents.items()]),
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.__dict__
    if isinstance(value, Decimal):
        return fixed_point(value)  # exact, as a JSON string as in the event
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(value: Any) -> str:
    """``value`` as the event writes it: decimals as fixed-point strings, instants in UTC."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_UTC_Z).decode()


def _line_row(event: CanonicalEvent, key: str, line: OrderLine) -> tuple[Any, ...]:
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
        line.in_progress_status,
        _json(line.charge_lines),
        None if line.confirmed is None else _json(line.confirmed),
        _json(line.buyer),
        _json(line.supplier),
        None if line.issued is None else _json(line.issued),
    )
