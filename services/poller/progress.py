"""What the poller reports while draining: metrics always, a bar on a terminal."""

from __future__ import annotations

import time
from types import TracebackType

from services.poller.drain import Stream
from shared.metrics import PullMetrics
from shared.normalize.fields import parse_timestamp
from shared.progress import Bar, Board


class PollObserver:
    """``drain``'s observer; also a context manager that shows and hides the bar."""

    def __init__(self, metrics: PullMetrics, *, progress: bool) -> None:
        self._metrics = metrics
        self._board = Board(enabled=progress)
        self._bars: dict[str, Bar] = {}
        self._shown: dict[str, int] = {}  # published so far, for the bar only

    def __enter__(self) -> PollObserver:
        self._board.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._board.__exit__(exc_type, exc, tb)

    def page(self, stream: Stream, done: int, total: int | None, published: int) -> None:
        """Count the page; move the bar (an unknown ``total``: as far as read so far)."""
        self._metrics.pages.labels(stream.name).inc()
        self._metrics.events.labels(stream.name).inc(published)
        if self._board.enabled:
            bar = self._bars.get(stream.name)
            if bar is None:
                bar = self._bars[stream.name] = self._board.bar(stream.name)
            known = max(total if total is not None else done, done)
            self._shown[stream.name] = self._shown.get(stream.name, 0) + published
            bar.update(completed=done, total=known, note=f"{self._shown[stream.name]} published")

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
