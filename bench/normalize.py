"""Normalizing Tradecloud order webhooks vs plain ``orjson.loads`` of the same bytes.

The normalize path is what ingress runs per request: exact-decimal decoding
(``loads_exact``) plus ``normalize_order_webhook`` into a validated
``CanonicalEvent``. Ratio = normalize time / orjson.loads time (lower is
better). Target: <= 6 for both a 10-line and a 100-line order.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import _common
from shared.normalize import tradecloud
from shared.schema.codec import dumps_exact, loads_exact

FIXTURE = (
    Path(__file__).resolve().parents[1] / "tests/fixtures/tradecloud/order-webhook-proposal.json"
)
NOW = datetime.now(UTC)


def order_with_lines(count: int) -> bytes:
    body = loads_exact(FIXTURE.read_bytes())
    template = body["orderEvent"]["lines"][0]
    lines = []
    for i in range(count):
        line = copy.deepcopy(template)
        line["id"] = f"line-{i:04d}"
        line["buyerLine"]["position"] = f"{(i + 1) * 10:04d}"
        # The typical line carries no open request: *IncludingRequests equal the plain values.
        line["deliveryScheduleIncludingRequests"] = copy.deepcopy(line["deliverySchedule"])
        line["pricesIncludingRequests"] = copy.deepcopy(line["prices"])
        lines.append(line)
    body["orderEvent"]["lines"] = lines
    return dumps_exact(body)


def main() -> None:
    cases: dict[str, dict[str, float]] = {}
    for count in (10, 100):
        data = order_with_lines(count)

        def parse(data: bytes = data) -> object:
            return orjson.loads(data)

        def normalize(data: bytes = data) -> object:
            return tradecloud.normalize_order_webhook(loads_exact(data), received_at=NOW)

        baseline = _common.best_rate(parse, seconds=2.0)
        rate = _common.best_rate(normalize, seconds=2.0)
        cases[f"{count}_lines"] = {
            "bytes": len(data),
            "normalize_per_s": round(rate),
            "orjson_loads_per_s": round(baseline),
            "cost_ratio": round(baseline / rate, 2),
        }
        _common.note(
            f"{count:>3} lines, {len(data):>7} bytes: normalize {rate:8.0f}/s, "
            f"orjson.loads {baseline:8.0f}/s, cost ratio {baseline / rate:.2f}"
        )
    worst = max(cases.values(), key=lambda c: c["cost_ratio"])
    _common.report(
        "normalize",
        value=worst["normalize_per_s"],
        unit="events/s",
        baseline=worst["orjson_loads_per_s"],
        ratio=worst["cost_ratio"],
        target="cost ratio <= 6 (normalize time / orjson.loads time)",
        cases=cases,
    )


if __name__ == "__main__":
    main()
