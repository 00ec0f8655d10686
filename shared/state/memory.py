"""In-process state store: the reference behaviour of the port, for tests and demos.

Nothing survives the process; use ``sqlite`` or ``postgres`` for anything real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from shared.applied import PartState
from shared.state.port import (
    AppliedDocument,
    Lookup,
    Record,
    Tokens,
    check_record,
    check_ttl,
    still_news,
)


class MemoryStateStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cursors: dict[str, str] = {}
        self._tokens: dict[str, Tokens] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._deliveries: dict[str, set[str]] = {}
        self._documents: dict[tuple[str, str], dict[str, PartState]] = {}

    async def get_cursor(self, stream: str) -> str | None:
        return self._cursors.get(stream)

    async def set_cursor(self, stream: str, value: str) -> None:
        self._cursors[stream] = value

    async def load_tokens(self, platform: str) -> Tokens | None:
        return self._tokens.get(platform)

    async def save_tokens(self, platform: str, tokens: Tokens) -> None:
        self._tokens[platform] = tokens

    async def try_acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)
        async with self._lock:
            now = self._clock()
            current = self._leases.get(name)
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self._leases[name] = (holder, now + ttl_seconds)
            return True

    async def release_lease(self, name: str, holder: str) -> None:
        async with self._lock:
            if self._leases.get(name, ("", 0.0))[0] == holder:
                del self._leases[name]

    async def lease_holder(self, name: str) -> str | None:
        current = self._leases.get(name)
        if current is None or current[1] <= self._clock():
            return None
        return current[0]

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        parts = self._documents.get((route, document))
        return None if parts is None else AppliedDocument(dict(parts))

    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        delivered = self._deliveries.get(route, set())
        results: list[tuple[bool, AppliedDocument | None]] = []
        for item in lookups:
            if item.delivery is not None and item.delivery in delivered:
                results.append((True, None))
            else:
                results.append((False, await self.applied_document(route, item.document)))
        return results

    async def record_applied(self, route: str, record: Record) -> bool:
        parts = check_record(record)
        async with self._lock:
            delivered = self._deliveries.setdefault(route, set())
            if record.delivery is not None and record.delivery in delivered:
                return False
            recorded = self._documents.get((route, record.document), {})
            writes = still_news(parts, recorded)
            if writes is None:
                return False
            self._documents[(route, record.document)] = {**recorded, **writes}
            if record.delivery is not None:
                delivered.add(record.delivery)
            return True

    async def record_applied_many(self, route: str, records: Sequence[Record]) -> list[bool]:
        return [await self.record_applied(route, record) for record in records]

    def not_ready_reason(self) -> str | None:
        return None

    async def close(self) -> None:
        return None
