"""What the code declares on a real broker equals deploy/rabbitmq/definitions.json."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from shared.broker import definitions

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl"),
]


def _export(vhost: str) -> dict[str, Any]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "export_definitions", "-", "--format", "json"],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    exported = json.loads(out)
    return {
        section: [item for item in exported[section] if item.get("vhost") == vhost]
        for section in ("exchanges", "queues", "bindings")
    }


def _comparable(section: str, items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    if section == "bindings":
        return sorted(
            (b["source"], b["destination"], b["destination_type"], b["routing_key"]) for b in items
        )
    if section == "queues":
        return sorted(
            (q["name"], q["durable"], json.dumps(q["arguments"], sort_keys=True)) for q in items
        )
    return sorted((e["name"], e["type"], e["durable"], e.get("internal", False)) for e in items)


async def test_declared_topology_matches_the_committed_definitions(
    connection: AbstractRobustConnection, vhost: str
) -> None:
    # The session's `connection` fixture declared the core topology on this vhost.
    on_broker = _export(vhost)
    committed = json.loads(definitions.DEFINITIONS_PATH.read_text())
    for section in ("exchanges", "queues", "bindings"):
        ours = [
            item
            for item in on_broker[section]
            if not item.get("name", item.get("source", "")).startswith("test.")
        ]
        declared = _comparable(section, ours)
        expected = _comparable(section, committed[section])
        assert set(expected) <= set(declared), (
            f"{section}: broker lacks {set(expected) - set(declared)}"
        )
