"""The one line a person can act on, and the exit code a supervisor decides by.

Every ``orderbridge`` subcommand runs under ``services.cli.main``, which hands
whatever stopped it to ``report``: an invalid setting, a bad ``routes.toml``, a
broker or state store that refused the login or could not be reached. Instead
of a traceback, stderr gets one line that names the variable (or file and key)
and the fix; the exit code says whether trying again can help
(``shared.exit_codes``):

* ``AccessRefused`` (wrong password, no permission): ``NOPERM`` (77)
* ``UsageError`` (a route that does not exist): ``USAGE`` (64)
* ``ConfigurationError`` (``SettingsError`` too) and pydantic's ``ValidationError``:
  ``CONFIG`` (78)
* ``BrokerUnavailable``, ``StateUnavailable`` (after the start wait) and ``OSError``
  (a port taken): ``UNAVAILABLE`` (69)
* any other ``OrderbridgeError``: ``FAILURE`` (1)

The line is readable text on a terminal and a JSON object otherwise
(``shared.logging.human_output``), like every other log line.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TextIO

import orjson
from pydantic import ValidationError

from shared import exit_codes
from shared.errors import (
    AccessRefused,
    BrokerUnavailable,
    ConfigurationError,
    OrderbridgeError,
    StateUnavailable,
    UsageError,
)
from shared.logging import human_output

FATAL = (OrderbridgeError, ValidationError, OSError)
"""What ``report`` turns into one line; anything else is a bug and keeps its traceback."""


def exit_code(exc: BaseException) -> int:
    """The exit code of a command stopped by ``exc``."""
    if isinstance(exc, AccessRefused):
        return exit_codes.NOPERM
    if isinstance(exc, UsageError):
        return exit_codes.USAGE
    if isinstance(exc, ConfigurationError | ValidationError):
        return exit_codes.CONFIG
    if isinstance(exc, BrokerUnavailable | StateUnavailable | OSError):
        return exit_codes.UNAVAILABLE
    return exit_codes.FAILURE


def one_line(exc: BaseException) -> str:
    """The error as one line of text (pydantic's multi-line report folded)."""
    if isinstance(exc, ValidationError):
        text = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or exc.title}: {error['msg']}"
            for error in exc.errors()
        )
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def report(
    command: str, exc: BaseException, *, stream: TextIO | None = None, code: int | None = None
) -> int:
    """Write ``exc`` as one line for ``orderbridge <command>``; return its exit code.

    ``code`` overrides the code the exception's class gives (a command's own refusals).
    """
    out = sys.stderr if stream is None else stream
    code = exit_code(exc) if code is None else code
    message = one_line(exc)
    if human_output():
        out.write(f"orderbridge {command}: {message}\n")
    else:
        record = {
            "event": message,
            "level": "error",
            "service": command,
            "error": type(exc).__name__,
            "exit_code": code,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        out.write(orjson.dumps(record).decode() + "\n")
    out.flush()
    return code
