"""Schema migrations of the state store backends, as data.

Each backend lists its migrations (same version numbers, same logical schema,
its own dialect) and applies the missing ones at open, inside one transaction
that also records them in ``orderbridge_schema_migrations``. The transaction
is serialized across processes (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an
advisory lock), so replicas starting together apply each migration once.
A migration, once released, is never edited: add a new one.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass

from shared.errors import ConfigurationError


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def pending(applied: Set[int], migrations: Sequence[Migration], *, where: str) -> list[Migration]:
    """The migrations still to apply, in order.

    A database migrated by a newer orderbridge is refused rather than guessed
    at: an older release cannot know what the newer schema means.
    """
    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        raise ConfigurationError(
            f"the {where} state store has schema version(s) {unknown} that this orderbridge "
            f"does not know (it knows up to {max(known, default=0)}): upgrade orderbridge"
        )
    return [m for m in sorted(migrations, key=lambda m: m.version) if m.version not in applied]
