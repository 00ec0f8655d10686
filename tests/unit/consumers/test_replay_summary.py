"""The line a replay ends with (``ReplayResult.summary``), by table."""

from __future__ import annotations

from collections import Counter

import pytest

from services.consumers.replay import ReplayResult


@pytest.mark.parametrize(
    ("result", "line"),
    [
        (
            ReplayResult("erp", False, read=4, matched=4, published=4, first=0, last=3),
            "replay erp: read 4, matched 4, published 4 to orderbridge.route.erp (offsets 0-3)",
        ),
        (
            ReplayResult(
                "erp",
                True,
                read=10,
                matched=7,
                first=5,
                last=14,
                skipped=Counter({"unbound": 2, "filtered": 1}),
            ),
            "replay erp (dry run): read 10, matched 7, would publish 7 to orderbridge.route.erp "
            "(offsets 5-14; skipped 1 refused by the route's filter, 2 not bound to the route)",
        ),
        (
            ReplayResult("erp", False),
            "replay erp: read 0, matched 0, published 0 to orderbridge.route.erp "
            "(nothing in window)",
        ),
    ],
)
def test_summary(result: ReplayResult, line: str) -> None:
    assert result.summary() == line
    assert result.as_json()["published"] == result.published
