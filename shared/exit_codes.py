"""Exit codes of every ``orderbridge`` command (BSD ``sysexits.h`` where one fits).

A supervisor (``orderbridge run``, systemd, Docker's restart policy, a
Kubernetes probe) decides from the code alone whether a restart can help:
``CONFIG``, ``USAGE`` and ``NOPERM`` cannot be fixed by trying again, so
``orderbridge run`` stops and says why instead of restarting the child;
``UNAVAILABLE`` and ``FAILURE`` may pass on the next attempt.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILURE: Final = 1
"""Something went wrong at run time (a drain that left messages, a crash)."""
ARGUMENTS: Final = 2
"""argparse's own code for an unknown option or a missing argument."""
USAGE: Final = 64
"""A well-formed command that names something that does not exist (``dlq list no-such-route``)."""
UNAVAILABLE: Final = 69
"""The broker or the state store could not be reached before the start deadline."""
NOPERM: Final = 77
"""The broker or the state store refused the credentials."""
CONFIG: Final = 78
"""A setting or ``routes.toml`` is invalid; the message names the variable or key."""

NOT_RESTARTABLE: Final = frozenset({ARGUMENTS, USAGE, NOPERM, CONFIG})
"""Codes after which restarting the same command with the same settings cannot succeed."""
