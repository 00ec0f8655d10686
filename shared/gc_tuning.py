"""Garbage-collector settings for the long-running services.

Every event allocates thousands of short-lived, acyclic objects (decoded JSON,
Decimals, model fields) that reference counting frees at once. With CPython's
default thresholds (700 allocations) the cyclic collector nevertheless runs
every few events and walks every young object: on the poller that was a third
of its CPU (1,385 → 1,966 orders/s measured with the settings below, same RSS).

``tune_for_throughput()`` freezes what start-up allocated (modules, schemas,
the app: it lives as long as the process and needs no scanning) and raises the
young-generation threshold, so collections are rarer, not skipped: real cycles
are still found.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 50_000
OLDER_THRESHOLDS: Final = (20, 100)


def tune_for_throughput() -> None:
    """Call once, after start-up, before the service takes work."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
