"""The supervisor with real child processes: restarts, output, graceful stop."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

from services.runner.supervisor import ChildSpec, Supervisor

CRASH_ONCE = """
import pathlib, sys, time
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text("crashed")
    print("crashing", flush=True)
    sys.exit(3)
print("steady", flush=True)
time.sleep(60)
"""

GRACEFUL = """
import signal, sys, time
def stop(*_):
    print("finishing in-flight work", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_crashed_child_restarts_and_all_stop_gracefully(tmp_path: Path) -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [
            ChildSpec("crasher", [sys.executable, "-c", CRASH_ONCE, str(tmp_path / "marker")]),
            ChildSpec("graceful", [sys.executable, "-c", GRACEFUL]),
        ],
        output=out,
        stop_timeout=5,
    )
    runner = asyncio.create_task(supervisor.run())
    await _until(
        lambda: "crasher  | steady" in out.getvalue() and "graceful | ready" in out.getvalue()
    )
    assert "crasher  | exited with code 3" in out.getvalue()
    assert supervisor.children[0].restarts == 1
    supervisor.stop()
    assert await asyncio.wait_for(runner, 10) == 0
    assert "graceful | finishing in-flight work" in out.getvalue()
    assert all(
        c.process is not None and c.process.returncode is not None for c in supervisor.children
    )


async def test_a_child_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [ChildSpec("stubborn", [sys.executable, "-c", STUBBORN])], output=out, stop_timeout=0.5
    )
    runner = asyncio.create_task(supervisor.run())
    await _until(lambda: "ignoring SIGTERM" in out.getvalue())
    supervisor.stop()
    await asyncio.wait_for(runner, 10)
    assert "did not stop within 0.5s: killed" in out.getvalue()
