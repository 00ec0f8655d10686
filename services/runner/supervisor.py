"""Supervise orderbridge services as child processes (``orderbridge run``).

Each child is an ``orderbridge`` subcommand started with ``python -m
services.cli``. Output lines are prefixed with the child's name; a child that
exits unexpectedly is restarted with capped exponential backoff (its work is
safe to repeat: publish-then-commit and idempotent consumers), unless its exit
code says a restart cannot help (``shared.exit_codes.NOT_RESTARTABLE``: an
invalid setting or routes file, refused credentials): then everything stops,
and the supervisor says which child and its last line, and exits with that
code. On Ctrl-C or
SIGTERM every child gets SIGTERM (graceful: in-flight work finishes), and
SIGKILL only after ``stop_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

import orjson

from shared import exit_codes
from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    restart: bool = True


@dataclass
class ChildState:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    last_line: str = ""
    """The child's last non-empty output line (its error, when it exits at start)."""


MEANING = {
    exit_codes.ARGUMENTS: "bad arguments",
    exit_codes.USAGE: "usage error",
    exit_codes.NOPERM: "access refused",
    exit_codes.CONFIG: "configuration error",
}


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        output: TextIO = sys.stdout,
        stop_timeout: float = 15.0,
        max_backoff: float = 30.0,
        cwd: str | None = None,
    ) -> None:
        self._children = [ChildState(spec) for spec in specs]
        self._output = output
        self._stop_timeout = stop_timeout
        self._max_backoff = max_backoff
        self._cwd = cwd
        self._stopping = asyncio.Event()
        self._fatal: tuple[ChildState, int] | None = None
        width = max((len(spec.name) for spec in specs), default=0)
        self._prefix: Callable[[str], str] = lambda name: f"{name:<{width}} | "

    @property
    def children(self) -> list[ChildState]:
        return self._children

    async def run(self) -> int:
        """Start every child and keep them running until ``stop()``; returns an exit code."""
        watchers = [asyncio.create_task(self._keep_running(child)) for child in self._children]
        await self._stopping.wait()
        await self._terminate_all()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        if self._fatal is None:
            return 0
        child, code = self._fatal
        self._output.write(
            f"stopped: {child.spec.name} exited with code {code} "
            f"({MEANING.get(code, 'not restartable')}), which a restart cannot fix: "
            f"{child.last_line or 'no output'}\n"
        )
        self._output.flush()
        return code

    @property
    def fatal(self) -> tuple[str, int, str] | None:
        """The child that stopped everything: its name, exit code and last line."""
        if self._fatal is None:
            return None
        child, code = self._fatal
        return child.spec.name, code, child.last_line

    def stop(self) -> None:
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop)

    async def _keep_running(self, child: ChildState) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            await self._start(child)
            assert child.process is not None
            code = await child.process.wait()
            await asyncio.gather(*child.tasks, return_exceptions=True)
            if self._stopping.is_set():
                return
            self._line(child.spec.name, f"exited with code {code}")
            if code in exit_codes.NOT_RESTARTABLE:
                self._line(child.spec.name, "not restarting (a restart cannot fix this): stopping")
                if self._fatal is None:
                    self._fatal = (child, code)
                self.stop()
                return
            if not child.spec.restart:
                return
            if time.monotonic() - child.started_at > 60:
                backoff = 0.5  # it ran for a while: a fresh failure, not a crash loop
            child.restarts += 1
            self._line(child.spec.name, f"restarting in {backoff:.1f}s (restart #{child.restarts})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _start(self, child: ChildState) -> None:
        env = {**os.environ, **child.spec.env, "PYTHONUNBUFFERED": "1"}
        child.process = await asyncio.create_subprocess_exec(
            *child.spec.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=self._cwd,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        child.started_at = time.monotonic()
        assert child.process.stdout is not None
        child.tasks = [asyncio.create_task(self._pump(child, child.process.stdout))]

    async def _pump(self, child: ChildState, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if text.strip():
                child.last_line = _message(text)
            self._line(child.spec.name, text)

    def _line(self, name: str, text: str) -> None:
        self._output.write(self._prefix(name) + text + "\n")
        self._output.flush()

    async def _terminate_all(self) -> None:
        running = [
            c for c in reversed(self._children) if c.process and c.process.returncode is None
        ]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        for child in running:
            assert child.process is not None
            try:
                await asyncio.wait_for(child.process.wait(), self._stop_timeout)
            except TimeoutError:
                self._line(child.spec.name, f"did not stop within {self._stop_timeout:g}s: killed")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
            await asyncio.gather(*child.tasks, return_exceptions=True)


def _message(line: str) -> str:
    """A JSON log line's message (``event``); any other line as it is."""
    if line.startswith("{"):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return line
        event = record.get("event") if isinstance(record, dict) else None
        if isinstance(event, str):
            return event
    return line


def orderbridge_argv(*args: str) -> list[str]:
    """The argv that runs an ``orderbridge`` subcommand with this interpreter."""
    return [sys.executable, "-m", "services.cli", *args]
