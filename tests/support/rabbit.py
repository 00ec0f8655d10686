"""A private RabbitMQ vhost per test session, so parallel runs never share queues.

Uses ``rabbitmqctl`` (present wherever the broker runs locally, as here and in
CI); without it the default vhost is used and tests rely on unique names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

BASE_URL = os.environ.get("ORDERBRIDGE_TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def _ctl(*args: str) -> bool:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return False
    result = subprocess.run([ctl, "-q", *args], capture_output=True, timeout=60, check=False)
    return result.returncode == 0


@contextmanager
def private_vhost(prefix: str = "orderbridge-test") -> Iterator[str]:
    """Yield an AMQP URL on a fresh vhost; delete the vhost afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    if not (
        _ctl("add_vhost", name) and _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    ):
        yield f"{BASE_URL}/"
        return
    try:
        yield f"{BASE_URL}/{quote(name, safe='')}"
    finally:
        _ctl("delete_vhost", name)


def _listing(what: str, vhost: str, columns: tuple[str, ...]) -> list[list[str]]:
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None, f"rabbitmqctl is needed to list {what}"
    out = subprocess.run(
        [ctl, "-q", f"list_{what}", "-p", vhost, "--no-table-headers", *columns],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def list_queues(vhost: str, *columns: str) -> list[list[str]]:
    return _listing("queues", vhost, columns)


def list_consumers(vhost: str, *columns: str) -> list[list[str]]:
    """Every consumer of the vhost, waiting single-active ones included."""
    return _listing("consumers", vhost, columns)
