"""Structured logs (structlog): readable text for a person, JSON lines for a machine.

``ORDERBRIDGE_LOG_FORMAT=auto`` (the default) renders readable text when stderr
is a terminal and one JSON object per line (orjson) otherwise, for every
service alike; ``json`` and ``console`` force one. ``human_output()`` tells
other code (progress bars, countdowns, the one-line fatal error) which one
applies. Standard-library loggers (aio-pika, aiohttp, asyncpg) go through the
same renderer, so an operator's log pipeline sees one format. Bind context
with ``structlog.contextvars.bind_contextvars(request_id=...)``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import orjson
import structlog

from shared.settings import LogFormat, LogSettings

_human: bool | None = None
"""The rendering ``configure_logging`` chose; None before it ran."""


def resolve_format(log_format: LogFormat, stream: TextIO | None = None) -> bool:
    """Whether ``log_format`` means readable text on ``stream`` (default: stderr)."""
    if log_format == "auto":
        stream = sys.stderr if stream is None else stream
        try:
            return stream.isatty()
        except (AttributeError, ValueError):  # a closed or stand-in stream
            return False
    return log_format == "console"


def human_output() -> bool:
    """Is output for a person (a terminal), rather than for a log pipeline?

    The choice ``configure_logging`` made; before logging is configured (an error
    in the settings themselves), ``ORDERBRIDGE_LOG_FORMAT`` when it reads as
    ``json`` or ``console``, else whether stderr is a terminal.
    """
    if _human is not None:
        return _human
    chosen = os.environ.get("ORDERBRIDGE_LOG_FORMAT", "").strip().lower()
    if chosen == "json":
        return False
    return chosen == "console" or resolve_format("auto")


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(settings: LogSettings, *, service: str) -> None:
    """Route structlog and stdlib logging to stderr in one format."""
    global _human
    _human = resolve_format(settings.log_format)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if not _human
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    structlog.contextvars.bind_contextvars(service=service)
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
