"""Progress bars for long jobs, on a terminal only.

A drain, a replay or a backlog poll can take minutes; an operator at a
terminal wants to see it move. A log pipeline does not: bars are drawn on
stderr only when it is a terminal and the logs are not JSON, and nothing at
all is drawn otherwise (no control codes in files, no extra lines in JSON logs).
Whether to draw is decided in one function, ``wanted``; metrics and the
summary line a command prints at the end do not depend on it.

``Board`` holds the bars of one job (one per stream, route or queue); a
disabled board accepts the same calls and does nothing, so callers never
branch on it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

FORMAT_VARIABLE = "ORDERBRIDGE_LOG_FORMAT"


def wanted(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Whether to draw: ``stream`` (stderr) is a terminal and the log format is not JSON.

    An unset format counts as ``auto`` (follow the terminal), as the poller's bar
    always did. This is the one place that decides; once ``shared.logging`` resolves
    ``auto`` itself, ask it here instead.
    """
    chosen = (os.environ if env is None else env).get(FORMAT_VARIABLE, "auto").strip().lower()
    if chosen == "json":
        return False
    out = sys.stderr if stream is None else stream
    try:
        return out.isatty()
    except (ValueError, AttributeError):  # closed or not a real stream
        return False


class Bar:
    """One bar of a ``Board``; every method is a no-op on a disabled board."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, steps: float = 1, *, note: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)
            if note is not None:
                self._progress.update(self._task, note=note)

    def update(
        self, *, completed: float | None = None, total: float | None = None, note: str | None = None
    ) -> None:
        if self._progress is None or self._task is None:
            return
        fields: dict[str, Any] = {} if note is None else {"note": note}
        if total is not None:
            fields["total"] = total
        self._progress.update(self._task, completed=completed, **fields)


class Board:
    """The bars of one job, drawn on stderr while the ``with`` block runs (when ``wanted``)."""

    def __init__(self, *, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.enabled = wanted(stream) if enabled is None else enabled
        self._progress = (
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                console=Console(file=stream or sys.stderr),
                transient=False,
            )
            if self.enabled
            else None
        )

    def bar(self, description: str, *, total: float | None = None, note: str = "") -> Bar:
        """A new bar; ``total`` None while unknown (the count still moves)."""
        if self._progress is None:
            return Bar(None, None)
        return Bar(self._progress, self._progress.add_task(description, total=total, note=note))

    def __enter__(self) -> Board:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
