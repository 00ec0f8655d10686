"""Where test payloads live: our own fixtures, and the steering kit's samples when present."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.schema.codec import loads_exact

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SAMPLES = Path(os.environ.get("ORDERBRIDGE_SAMPLES_DIR", REPO.parent / "shared" / "samples"))


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def fixture(relative: str) -> Any:
    """A fixture decoded the way services decode upstream bodies (exact decimals)."""
    return loads_exact(fixture_bytes(relative))


def samples_available() -> bool:
    return SAMPLES.is_dir()
