"""File adapter: one JSON file per applied event in an inbox folder.

Files are written atomically (temporary file, fsync, rename, fsync of the
folder), so an ERP import job never sees half a file, and named

    <applied at, UTC µs>--<source>--<kind>--<document number>--v<version>--<event id>.json

so the job can process them in application order (sort by name) and dedupe on
(source, document number, version, event id). With ``csv = true`` a
``.lines.csv`` file with one row per applied line is written beside it (first,
so the JSON's appearance means both are complete).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from services.consumers.adapters import Application
from shared.errors import ConfigurationError, RetryableError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

CSV_COLUMNS = (
    "source",
    "document_id",
    "document_number",
    "version",
    "line_id",
    "position",
    "item_number",
    "item_name",
    "delivery_date",
    "quantity",
    "net_price",
    "currency",
    "process_status",
    "logistics_status",
    "line_last_updated_at",
    "event_id",
)


class FileAdapter:
    def __init__(self, path: str, csv: bool = False, fsync: bool = True) -> None:
        self.path = Path(path)
        self.csv = csv
        self.fsync = fsync
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"file adapter: cannot create {self.path}: {exc}") from None

    async def apply(self, item: Application) -> None:
        try:
            await asyncio.to_thread(self._write, item)
        except OSError as exc:  # disk full, permissions changed: try again later
            raise RetryableError(f"file adapter: {exc}", retry_after=30) from None

    async def apply_many(self, items: list[Application]) -> list[BaseException | None]:
        """A round's files in one worker-thread call and one folder fsync (the costly one)."""
        return await asyncio.to_thread(self._write_many, items)

    async def close(self) -> None:
        return None

    def _write_many(self, items: list[Application]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for item in items:
            try:
                self._write(item, sync_folder=False)
                results.append(None)
            except OSError as exc:
                results.append(RetryableError(f"file adapter: {exc}", retry_after=30))
        if self.fsync and any(result is None for result in results):
            try:
                self._sync_folder()
            except OSError as exc:  # nothing of this round is durable: all retry
                return [RetryableError(f"file adapter: {exc}", retry_after=30) for _ in items]
        return results

    def file_name(self, item: Application, applied_at: datetime) -> str:
        event = item.event
        parts = (
            applied_at.strftime("%Y%m%dT%H%M%S%fZ"),
            event.source,
            event.kind,
            _UNSAFE.sub("_", event.document_number or event.document_id)[:80],
            f"v{event.version}" if event.version is not None else "vNA",
            event.event_id,
        )
        return "--".join(parts) + ".json"

    def _write(self, item: Application, *, sync_folder: bool = True) -> None:
        name = self.file_name(item, datetime.now(UTC))
        if self.csv and item.event.order is not None:
            self._atomic(name.removesuffix(".json") + ".lines.csv", _lines_csv(item))
        self._atomic(name, item.effective_body)
        if self.fsync and sync_folder:
            self._sync_folder()

    def _sync_folder(self) -> None:
        """Make the renames durable (a rename lives in the folder's own data)."""
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _atomic(self, name: str, data: bytes) -> None:
        temporary = self.path / f".{name}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        os.replace(temporary, self.path / name)


def _lines_csv(item: Application) -> bytes:
    event = item.effective_event
    assert event.order is not None
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for line in event.order.lines:
        entry = line.delivery_schedule[0] if line.delivery_schedule else None
        net = line.prices["net"] if line.prices is not None else None
        money = net["transaction"] if net is not None else None
        writer.writerow(
            (
                event.source,
                event.document_id,
                event.document_number or "",
                "" if event.version is None else event.version,
                line.line_id or "",
                line.position or "",
                line.item["number"] or "",
                line.item["name"] or "",
                entry["date"]["text"] if entry and entry["date"] else "",
                format(entry["quantity"], "f") if entry and entry["quantity"] is not None else "",
                format(money["value"], "f") if money else "",
                (money["currency"] if money else "") or "",
                line.process_status or "",
                line.logistics_status or "",
                line.last_updated_at["text"] if line.last_updated_at else "",
                event.event_id,
            )
        )
    return out.getvalue().encode()
