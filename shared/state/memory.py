"""In-process state store: the reference behaviour of the port, for tests and demos.

Nothing survives the process; use ``sqlite`` or ``postgres`` for anything real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from shared.state.port import AppliedDocument, Lookup, Tokens, check_applied, check_ttl


class MemoryStateStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cursors: dict[str, str] = {}
        self._tokens: dict[str, Tokens] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._processed: dict[str, set[str]] = {}
        self._documents: dict[tuple[str, str], AppliedDocument] = {}

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

    async def is_processed(self, route: str, keys: Sequence[str]) -> bool:
        seen = self._processed.get(route, set())
        return any(key in seen for key in keys)

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        return self._documents.get((route, document))

    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        results: list[tuple[bool, AppliedDocument | None]] = []
        for item in lookups:
            processed = await self.is_processed(route, item.keys)
            results.append(
                (
                    processed,
                    None if processed else await self.applied_document(route, item.document),
                )
            )
        return results

    async def record_applied(
        self,
        route: str,
        keys: Sequence[str],
        document: str,
        version: int | None,
        lines: Mapping[str, datetime],
    ) -> bool:
        stamps = check_applied(keys, lines)
        async with self._lock:
            seen = self._processed.setdefault(route, set())
            if any(key in seen for key in keys):
                return False
            seen.update(keys)
            before = self._documents.get((route, document), AppliedDocument())
            merged = dict(before.lines)
            for line, stamp in stamps.items():
                if line not in merged or merged[line] < stamp:
                    merged[line] = stamp
            versions = [v for v in (before.version, version) if v is not None]
            self._documents[(route, document)] = AppliedDocument(
                version=max(versions) if versions else None, lines=merged
            )
            return True

    def not_ready_reason(self) -> str | None:
        return None

    async def close(self) -> None:
        return None
