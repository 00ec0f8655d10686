"""The file adapter's write-ahead notes: change key → the file name meant for it.

One SQLite file (WAL, ``synchronous=FULL``) in the inbox's hidden
``.orderbridge-intents/`` folder. A round notes all its events in one
transaction, so making the notes durable costs one commit instead of a file
per event. Creating a file was most of a round's cost (50-800 µs of kernel CPU
each on the 2-core VM): interleaved bench runs went from 1,050-1,080 to
1,250-1,420 events/s. Consumer processes on one host may share an inbox: SQLite's locking
serializes their transactions, and an insert-if-absent decides who noted first.

Note files of earlier releases (one per key, named by its digest, holding the
name) are imported when the adapter starts, then removed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shared.state.sqlite import configure_wal, transaction

DATABASE = "intents.db"

_SCHEMA = """CREATE TABLE IF NOT EXISTS orderbridge_file_intents (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    noted_at REAL NOT NULL
) WITHOUT ROWID"""


class IntentNotes:
    """Durable notes, safe to use from any thread (one connection behind a lock)."""

    def __init__(
        self, folder: Path, *, durable: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        """``durable=False`` (the adapter's ``fsync = false``) skips the fsync per commit:
        consistent after a crash, but a power loss may forget the last notes."""
        self.folder = folder
        self.clock = clock
        self._lock = threading.Lock()
        path = folder / DATABASE
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30
        )
        try:
            configure_wal(self._conn, path, timeout=30, synchronous="FULL" if durable else "NORMAL")
            self._conn.execute(_SCHEMA)
        except BaseException:
            self._conn.close()
            raise

    def note(self, wanted: Sequence[tuple[str, str]]) -> list[tuple[str, bool]]:
        """For each ``(digest, proposed name)``: the name to use, and whether it was noted
        before (then it is the earlier name). Durable when this returns."""
        noted_at = self.clock()
        answers: list[tuple[str, bool]] = []
        with self._lock, transaction(self._conn):
            for digest, proposed in wanted:
                inserted = self._conn.execute(
                    """INSERT INTO orderbridge_file_intents (digest, name, noted_at)
                       VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING""",
                    (digest, proposed, noted_at),
                ).rowcount
                if inserted:
                    answers.append((proposed, False))
                    continue
                (earlier,) = self._conn.execute(
                    "SELECT name FROM orderbridge_file_intents WHERE digest = ?", (digest,)
                ).fetchone()
                answers.append((str(earlier), True))
        return answers

    def prune(self, older_than: float) -> int:
        """Forget notes made before ``older_than`` (epoch seconds); how many."""
        with self._lock, transaction(self._conn):
            return self._conn.execute(
                "DELETE FROM orderbridge_file_intents WHERE noted_at < ?", (older_than,)
            ).rowcount

    def import_note_files(self) -> int:
        """Take over the per-key note files of earlier releases; how many."""
        legacy = [
            path
            for path in self.folder.iterdir()
            if path.is_file() and not path.name.startswith((DATABASE, "."))
        ]
        if not legacy:
            return 0
        rows = []
        for path in legacy:
            name = path.read_text().strip()
            if name:
                rows.append((path.name, name, path.stat().st_mtime))
        with self._lock, transaction(self._conn):
            self._conn.executemany(
                """INSERT INTO orderbridge_file_intents (digest, name, noted_at)
                   VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING""",
                rows,
            )
        for path in legacy:  # only once the import is durable
            path.unlink(missing_ok=True)
        return len(legacy)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
