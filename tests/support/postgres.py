"""A private PostgreSQL database per test (or session), dropped afterwards.

The server is the real one on 127.0.0.1:5432 (trust auth, user ``postgres``;
``.ci/services.sh`` starts it). ``ORDERBRIDGE_TEST_POSTGRES_URL`` points
elsewhere: any database on the server the tests may create databases on.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL = os.environ.get(
    "ORDERBRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


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
