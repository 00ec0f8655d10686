"""HTTP adapter: POST the canonical event to an ERP endpoint.

* Body: the canonical event JSON (without stale lines, see ``Application``).
* Headers: ``Content-Type: application/json``, ``Idempotency-Key`` (the change
  key, ``Application.change_key``: the document and the content this call
  applies; an ERP that honours it turns the rare double delivery after a crash
  between its answer and our record into one effect, while two different
  changes at one order version keep two keys),
  ``X-Orderbridge-Event-Id`` and whatever ``headers`` the route configures
  (``${ENV}`` expansion keeps tokens out of the file).
* Answers: 2xx applied; 408, 429, 5xx, timeouts and connection errors are
  retryable; every other 4xx is permanent (dead-lettered with the answer).
* ``timeout`` (default 10 s) stays well under RabbitMQ's consumer timeout.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from services.consumers.adapters import Application
from shared.errors import ConfigurationError, PermanentError, RetryableError

RETRYABLE = frozenset({408, 425, 429})


class HttpAdapter:
    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        method: str = "POST",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"http adapter: url must be http(s), got {url!r}")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.method = method.upper()
        self._session: aiohttp.ClientSession | None = None

    async def apply(self, item: Application) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {
            **self.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": item.change_key,
            "X-Orderbridge-Event-Id": item.event.event_id,
        }
        try:
            async with self._session.request(
                self.method, self.url, data=item.effective_body, headers=headers
            ) as response:
                text = (await response.read())[:500].decode(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"ERP endpoint unreachable: {exc!r}", retry_after=5) from None
        if 200 <= status < 300:
            return
        if status in RETRYABLE or status >= 500:
            raise RetryableError(f"ERP answered {status}: {text}", retry_after=5)
        raise PermanentError(f"ERP refused the event with {status}: {text}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
