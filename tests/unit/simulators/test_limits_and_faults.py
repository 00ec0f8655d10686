"""The Tradecloud simulator's rate limit (pure, clock passed in) and fault validation."""

from __future__ import annotations

import pytest

from services.simulators.faults import Fault
from services.simulators.limits import TokenBucket


def test_the_token_bucket_allows_its_rate_per_second() -> None:
    bucket = TokenBucket(rate=10.0)
    assert all(bucket.take("user", 0.0) is None for _ in range(10))
    wait = bucket.take("user", 0.0)
    assert wait == pytest.approx(0.1)
    assert bucket.take("user", 0.1) is None
    # From t=1 the bucket is full again (at most 10), then refills 10 per second.
    admitted = sum(bucket.take("user", 1.0 + i / 100) is None for i in range(100))
    assert 15 <= admitted <= 20


@pytest.mark.parametrize(
    "body",
    [{"kind": "explode"}, {"kind": "status", "status": 42}, {"kind": "delay", "count": 0}],
)
def test_nonsense_faults_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"fault|status"):
        Fault.from_json(body, default_path="/v2/")


def test_fault_defaults() -> None:
    fault = Fault.from_json(
        {"kind": "status", "status": 429, "retry_after": 2}, default_path="/api/"
    )
    assert (fault.path, fault.count, fault.retry_after) == ("/api/", 1, 2.0)
