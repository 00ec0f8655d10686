"""Shared bits of the benchmark scripts: timing, the JSON result line, a private vhost."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson


def best_rate(
    fn: Callable[[], Any], *, per_call: int = 1, seconds: float = 1.0, rounds: int = 5
) -> float:
    """Calls per second (times ``per_call``), best of ``rounds`` windows: robust to noise."""
    best = 0.0
    for _ in range(rounds):
        calls = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / rounds:
            fn()
            calls += 1
        best = max(best, calls * per_call / elapsed)
    return best


def report(
    bench: str,
    *,
    value: float,
    unit: str,
    baseline: float,
    ratio: float,
    target: str,
    **details: Any,
) -> None:
    """The one JSON line every bench script ends with."""
    line = {
        "bench": bench,
        "value": round(value, 2),
        "unit": unit,
        "baseline": round(baseline, 2),
        "ratio": round(ratio, 3),
        "target": target,
    }
    if details:
        line["details"] = details
    sys.stdout.write(orjson.dumps(line).decode() + "\n")


def note(message: str) -> None:
    sys.stderr.write(message + "\n")


def amqp_base() -> str:
    return os.environ.get("ORDERBRIDGE_BENCH_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")
