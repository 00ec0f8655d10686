"""Example third-party ERP adapter (see README.md beside this file).

An adapter is any object with ``async apply(item)`` and ``async close()``
(optionally ``async start()``). It raises ``RetryableError`` for transient
trouble and ``PermanentError`` for events the ERP will never accept.
"""

from __future__ import annotations

from services.consumers.adapters import Application
from shared.errors import PermanentError


class AcmeAdapter:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.applied: list[str] = []

    async def apply(self, item: Application) -> None:
        if item.event.document_number is None:
            raise PermanentError("ACME needs a purchase order number")
        # A real adapter would call self.endpoint here.
        self.applied.append(item.event.idempotency_key)

    async def close(self) -> None:
        return None
