"""What the poller reports while draining: metrics always, a progress bar on a terminal."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from services.poller.drain import Stream
from shared.metrics import PullMetrics
from shared.normalize.fields import parse_timestamp


class PollObserver:
    """``drain``'s observer; also a context manager that shows and hides the bar."""

    def __init__(self, metrics: PullMetrics, *, progress: bool) -> None:
        self._metrics = metrics
        self._bar = (
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[published]} published"),
                console=Console(stderr=True),
                transient=False,
            )
            if progress
            else None
        )
        self._tasks: dict[str, TaskID] = {}
        self._shown: dict[str, int] = {}  # published so far, for the bar only

    def __enter__(self) -> PollObserver:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def page(self, stream: Stream, done: int, total: int | None, published: int) -> None:
        """Count the page; move the bar (an unknown ``total``: as far as read so far)."""
        self._metrics.pages.labels(stream.name).inc()
        self._metrics.events.labels(stream.name).inc(published)
        if self._bar is not None:
            task = self._tasks.get(stream.name)
            known = max(total if total is not None else done, done)
            if task is None:
                task = self._bar.add_task(stream.name, total=known, published=0)
                self._tasks[stream.name] = task
            self._shown[stream.name] = self._shown.get(stream.name, 0) + published
            self._bar.update(task, completed=done, total=known, published=self._shown[stream.name])

    def restarted(self, stream: Stream) -> None:
        self._metrics.restarts.labels(stream.name).inc()

    def quarantined(self, stream: Stream) -> None:
        self._metrics.quarantined.labels(stream.name).inc()

    def committed(self, stream: Stream, cursor: str) -> None:
        """A drain started from, or committed, ``cursor``."""
        utc = parse_timestamp(cursor)["utc"]
        if utc is not None:
            self._metrics.cursor.labels(stream.name).set(utc.timestamp())

    def drained(self, stream: Stream) -> None:
        self._metrics.last_drained.labels(stream.name).set(time.time())
