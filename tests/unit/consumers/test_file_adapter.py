"""The file adapter writes each effect once, even when a crash repeats the apply."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.consumers.adapters import Application
from services.consumers.adapters import file as file_adapter
from services.consumers.adapters.file import INTENTS, FileAdapter
from shared.schema.codec import decode_event, encode_event
from tests.support.events import order_event


def application(document_id: str = "order-1", version: int = 3) -> Application:
    event = order_event(document_id=document_id, version=version)
    return Application("route", event, encode_event(event))


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
    polled = application()  # same document and version: same idempotency key, other event id
    assert webhook.event.idempotency_key == polled.event.idempotency_key
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
    adapter = FileAdapter(str(tmp_path), intent_days=1)
    await adapter.apply(application("old"))
    await adapter.apply(application("new"))
    notes = sorted((tmp_path / INTENTS).iterdir(), key=lambda p: p.stat().st_mtime)
    two_days_ago = time.time() - 2 * 86400
    os.utime(notes[0], (two_days_ago, two_days_ago))
    await adapter.start()
    assert len(list((tmp_path / INTENTS).iterdir())) == 1
