"""The one error tree of orderbridge.

Every failure is either *permanent* (the same input will fail again: reject it,
dead-letter it, answer 4xx) or *retryable* (the world may change: retry with
backoff, answer 503, leave the message or cursor where it is). Library
exceptions (aio-pika, aiohttp, asyncpg, ...) are translated into this tree at the
edge of the module that calls the library, so callers decide by class alone:

    OrderbridgeError
    ├── PermanentError            never retry the same input
    │   ├── InvalidPayload        a document we can never accept (names the field path)
    │   ├── ConfigurationError    settings or topology that cannot work
    │   │   ├── AccessRefused       the broker, database or file system refused access
    │   │   └── UsageError          a command names something that does not exist
    │   └── UpstreamRejected      the upstream API refused the request (4xx other than 408/429)
    └── RetryableError            transient: retry later, answer 503, keep the cursor
        ├── BrokerUnavailable     no open channel to RabbitMQ
        ├── PublishTimeout        no confirm within the publish timeout
        ├── PublishNacked         the broker refused the message (disk/memory alarm, queue limits)
        ├── PublishUnroutable     mandatory publish returned: topology is broken until fixed
        ├── Backpressure          too many confirms in flight; shed load instead of buffering
        ├── UpstreamUnavailable   upstream API 429/5xx/timeout after our own retries
        ├── StateUnavailable      the state store (SQLite file, PostgreSQL) is unreachable or busy
        └── LeaseLost             this instance no longer holds the lease it works under
"""

from __future__ import annotations


class OrderbridgeError(Exception):
    """Base of every error orderbridge raises on purpose."""

    retryable: bool = False


class PermanentError(OrderbridgeError):
    """Retrying the same input cannot succeed."""

    retryable = False


class RetryableError(OrderbridgeError):
    """A transient condition; the same input may succeed later.

    ``retry_after`` is a hint in seconds (used for HTTP ``Retry-After``).
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidPayload(PermanentError):
    """An incoming document that cannot be normalized.

    ``path`` names the offending field as a dotted path with list indices,
    e.g. ``orderEvent.lines[3].buyerLine``. It is part of every 4xx answer, so
    keep messages free of secrets and short enough to show to a customer.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.reason = message


class ConfigurationError(PermanentError):
    """Settings or topology that cannot work; fix the deployment, not the data."""


class AccessRefused(ConfigurationError):
    """RabbitMQ, PostgreSQL or the file system refused credentials or access (``NOPERM``)."""


class UsageError(ConfigurationError):
    """A well-formed command naming something that does not exist (exit code ``USAGE``)."""


class UpstreamRejected(PermanentError):
    """An upstream API answered with a 4xx that retrying cannot fix."""

    def __init__(self, message: str, *, status: int, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.path = path
        """The API path whose answer this is (None for the login and token calls)."""


class BrokerUnavailable(RetryableError):
    """No usable channel to RabbitMQ right now."""


class PublishTimeout(RetryableError):
    """The broker did not confirm within the publish timeout (it may still)."""


class PublishNacked(RetryableError):
    """The broker answered basic.nack: it did not take responsibility for the message."""


class PublishUnroutable(RetryableError):
    """A mandatory publish came back unroutable.

    Retryable on purpose: the message is fine, the topology is not. Answering
    503 (and keeping cursors) loses nothing while an operator repairs bindings.
    """


class Backpressure(RetryableError):
    """Too many publishes awaiting confirms; shedding load keeps memory bounded."""


class UpstreamUnavailable(RetryableError):
    """An upstream API stayed unavailable (429, 5xx, timeouts) after our retries."""


class StateUnavailable(RetryableError):
    """The state store could not be reached or stayed locked past its busy timeout.

    Nothing was recorded by the failing call (each write is one transaction), so
    the caller retries the whole step: the consumer redelivers, the poller keeps
    its cursor.
    """


class LeaseLost(RetryableError):
    """This instance's lease expired or was taken over; stop before committing anything.

    Retryable: the instance waits for the lease again and resumes from the
    committed cursor, which the new holder may have moved meanwhile.
    """
