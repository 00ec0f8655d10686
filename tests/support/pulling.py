"""Helpers for the pull services' tests: collect published events, run a service process."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared.schema.codec import decode_event
from shared.schema.models import CanonicalEvent
from tests.support.ingress import EventTap

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Collected:
    """Everything published to ``orderbridge.events`` since the tap opened, decoded.

    A consumer pushes into ``events`` as messages arrive (no polling round trips), so a
    test sees progress as soon as the broker routes it.
    """

    tap: EventTap
    events: list[CanonicalEvent] = field(default_factory=list)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, connection: AbstractRobustConnection, pattern: str = "#"
    ) -> AsyncIterator[Collected]:
        tap = await EventTap.open(connection, pattern)
        collected = cls(tap)

        async def on_message(message: AbstractIncomingMessage) -> None:
            collected.events.append(decode_event(message.body))

        await tap.channel.set_qos(prefetch_count=1000)
        await tap.queue.consume(on_message, no_ack=True)
        try:
            yield collected
        finally:
            await tap.close()

    async def take(self) -> list[CanonicalEvent]:
        """What has arrived so far."""
        await asyncio.sleep(0)
        return self.events

    async def arrived(self) -> int:
        return len(self.events)

    async def until(
        self, done: Callable[[list[CanonicalEvent]], bool], within: float = 30.0
    ) -> list[CanonicalEvent]:
        deadline = time.monotonic() + within
        while not done(self.events):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {within}s; {len(self.events)} events"
                )
            await asyncio.sleep(0.02)
        return self.events

    def latest_versions(self, kind: str = "order") -> dict[str, int | None]:
        latest: dict[str, int | None] = {}
        for event in self.events:
            if event.kind == kind:
                previous = latest.get(event.document_id)
                if previous is None or (event.version or 0) > previous:
                    latest[event.document_id] = event.version
        return latest


async def start_service(
    command: str, *args: str, env: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """``python -m services.cli <command> …`` with only ``env``'s ORDERBRIDGE_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    clean.update(env)
    clean.setdefault("ORDERBRIDGE_LOG_FORMAT", "json")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        command,
        *args,
        cwd=REPO,
        env=clean,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, within: float = 60.0) -> tuple[int, str]:
    """Wait for the process; its exit status and stderr."""
    async with asyncio.timeout(within):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")
