"""A private PostgreSQL database per test (or session), dropped afterwards.

The server is the real one on 127.0.0.1:5432 (``.ci/services.sh`` starts it).
The role is, in this order: ``ORDERBRIDGE_TEST_POSTGRES_URL`` (any database on
a server where that role may create databases); the test role that
``.ci/services.sh`` created on a server that asks for a password (its URL in
``.orderbridge/test-postgres-url``); ``postgres`` without a password (trust).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_CREATED_ROLE = Path(__file__).resolve().parents[2] / ".orderbridge" / "test-postgres-url"


def _admin_url() -> str:
    configured = os.environ.get("ORDERBRIDGE_TEST_POSTGRES_URL")
    if configured:
        return configured
    if _CREATED_ROLE.is_file():
        return _CREATED_ROLE.read_text().strip()
    return "postgresql://postgres@127.0.0.1:5432/postgres"


ADMIN_URL = _admin_url()


def database_url(name: str) -> str:
    """The admin URL with its database replaced by ``name``."""
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


@asynccontextmanager
async def private_database(prefix: str = "orderbridge_test") -> AsyncIterator[str]:
    """Yield the URL of a fresh, uniquely named database; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield database_url(name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
