"""The file adapter writes each effect once, even when a crash repeats the apply."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.consumers.adapters import Application
from services.consumers.adapters import file as file_adapter
from services.consumers.adapters.file import INTENTS, FileAdapter
from services.consumers.policy import decide
from shared.normalize import tradecloud
from shared.schema.codec import decode_event, encode_event
from tests.support.consumers import make_route
from tests.support.events import order_event
from tests.support.files import fixture

ROUTE = make_route({"type": "file", "path": "unused"})


def application(document_id: str = "order-1", version: int = 3) -> Application:
    """A fresh event (own messageId) applied whole, with the change key the route gives it."""
    event = order_event(document_id=document_id, version=version)
    change = decide(event, ROUTE, delivered=False, applied=None).change
    return Application("route", event, encode_event(event), change=change)


def effects(folder: Path, pattern: str = "*.json") -> list[Path]:
    return sorted(folder.glob(pattern))


@pytest.fixture(params=[True, False], ids=["group-sync", "per-file-fsync"])
def group_sync(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(file_adapter, "GROUP_SYNC_MIN", 1)  # small rounds take the group path too
    return bool(request.param)


async def test_an_event_applied_again_writes_nothing_more(tmp_path: Path) -> None:
    adapter = FileAdapter(str(tmp_path))
    item = application()
    await adapter.apply(item)
    await adapter.apply(item)  # the consumer died before recording: redelivered
    [written] = effects(tmp_path)
    assert decode_event(written.read_bytes()).event_id == item.event.event_id


async def test_another_delivery_of_the_same_effect_writes_nothing_more(
    tmp_path: Path, group_sync: bool
) -> None:
    adapter = FileAdapter(str(tmp_path), group_sync=group_sync)
    webhook = application()
    polled = application()  # the same change in another event (another messageId)
    assert webhook.change_key == polled.change_key
    assert webhook.event.event_id != polled.event.event_id
    assert await adapter.apply_many([webhook]) == [None]
    assert await adapter.apply_many([polled]) == [None]
    assert len(effects(tmp_path)) == 1


async def test_a_crash_between_note_and_file_writes_the_noted_file_once(tmp_path: Path) -> None:
    adapter = FileAdapter(str(tmp_path))
    item = application()
    noted = adapter._intend(item)  # the process died right after its note was durable
    assert noted is not None and effects(tmp_path) == []
    await adapter.apply(item)
    await adapter.apply(item)
    assert [path.name for path in effects(tmp_path)] == [noted]


async def test_new_versions_are_new_effects(tmp_path: Path, group_sync: bool) -> None:
    adapter = FileAdapter(str(tmp_path), group_sync=group_sync, csv=True)
    results = await adapter.apply_many([application(version=3), application("order-2", 1)])
    assert results == [None, None]
    await adapter.apply(application(version=4))
    assert len(effects(tmp_path)) == 3
    assert len(effects(tmp_path, "*.lines.csv")) == 3
    assert not effects(tmp_path, ".*.tmp"), "temporary files left behind"
    for path in effects(tmp_path):
        assert decode_event(path.read_bytes()).version in (1, 3, 4)


async def test_a_round_after_a_crash_writes_the_noted_file_once(
    tmp_path: Path, group_sync: bool
) -> None:
    adapter = FileAdapter(str(tmp_path), group_sync=group_sync)
    crashed, fresh = application("crashed"), application("fresh")
    noted = adapter._intend(crashed)
    assert await adapter.apply_many([crashed, fresh]) == [None, None]
    assert await adapter.apply_many([crashed, fresh]) == [None, None]
    names = [path.name for path in effects(tmp_path)]
    assert len(names) == 2 and noted in names


async def test_old_notes_are_pruned_at_start(tmp_path: Path) -> None:
    """A kept note names the file to write again; a pruned one is forgotten (new name)."""
    adapter = FileAdapter(str(tmp_path), intent_days=1)
    old, new = application("old"), application("new")
    adapter.notes.clock = lambda: time.time() - 2 * 86400
    await adapter.apply(old)
    adapter.notes.clock = time.time
    await adapter.apply(new)
    first = {path.name for path in effects(tmp_path)}
    await adapter.start()
    for path in effects(tmp_path):  # the import job took both files
        path.unlink()
    await asyncio.sleep(0.001)  # a later applied-at, so a new note gets a new name
    assert await adapter.apply_many([old, new]) == [None, None]
    again = {path.name for path in effects(tmp_path)}
    assert len(first & again) == 1 and "PO-new" in next(iter(first & again))
    await adapter.close()


async def test_note_files_of_earlier_releases_are_taken_over(tmp_path: Path) -> None:
    item = application()
    digest = hashlib.sha256(item.change_key.encode()).hexdigest()[:40]
    (tmp_path / INTENTS).mkdir()
    noted = "20260101T000000000000Z--tradecloud--order--PO-1--v3--earlier.json"
    (tmp_path / INTENTS / digest).write_text(noted + "\n")
    adapter = FileAdapter(str(tmp_path))
    await adapter.start()
    assert [
        p.name for p in (tmp_path / INTENTS).iterdir() if not p.name.startswith("intents")
    ] == []
    await adapter.apply(item)  # noted before the upgrade, file missing: exactly that file
    await adapter.apply(item)
    assert [path.name for path in effects(tmp_path)] == [noted]
    await adapter.close()


async def test_two_adapters_sharing_an_inbox_write_an_effect_once(tmp_path: Path) -> None:
    """Two consumer processes on one host, one inbox: the first note wins."""
    first, second = FileAdapter(str(tmp_path)), FileAdapter(str(tmp_path))
    webhook, polled = application(), application()
    results = await asyncio.gather(first.apply_many([webhook]), second.apply_many([polled]))
    assert list(results) == [[None], [None]]
    assert len(effects(tmp_path)) == 1
    await first.close()
    await second.close()


LEGACY_CSV_COLUMNS = (
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


async def test_the_lines_csv_carries_the_open_request_after_the_earlier_columns(
    tmp_path: Path,
) -> None:
    """The order response in full: the supplier's open proposal, exact to the last digit."""
    event = tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-response-full.json"), received_at=datetime(2026, 3, 3, tzinfo=UTC)
    )
    decision = decide(event, ROUTE, delivered=False, applied=None)
    adapter = FileAdapter(str(tmp_path), csv=True)
    lines = ("line-0010", "line-0090")  # as if the split line were known already
    await adapter.apply(
        Application(
            "route", event, encode_event(event), header=False, lines=lines, change=decision.change
        )
    )
    [written] = effects(tmp_path, "*.lines.csv")
    header, *rows = list(csv.reader(io.StringIO(written.read_text())))
    assert tuple(header[: len(LEGACY_CSV_COLUMNS)]) == LEGACY_CSV_COLUMNS, "old columns first"
    assert tuple(header) == file_adapter.CSV_COLUMNS
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [row["line_id"] for row in table] == ["line-0010", "line-0090"]
    proposal, charge = table
    assert {key: proposal[key] for key in header[len(LEGACY_CSV_COLUMNS) :]} == {
        "in_progress_status": "OpenSupplierProposal",
        "open_request_side": "supplier",
        "open_request_kind": "proposal",
        "open_request_status": "Open",
        "open_request_reason": "capacity",
        "open_request_date": "2026-04-15",
        "open_request_quantity": "80",
        "open_request_net_price": "3.045370369287037036",
        "open_request_currency": "CNY",
        "charge_lines": "1",
    }
    assert (proposal["net_price"], proposal["currency"], proposal["quantity"]) == (
        "0.4125",
        "EUR",
        "100",
    ), "the line's own columns keep the issued values"
    assert charge["process_status"] == "Confirmed"
    assert all(charge[key] == "" for key in header if key.startswith("open_request_"))
    assert (charge["in_progress_status"], charge["charge_lines"]) == ("", "0")
    await adapter.close()
