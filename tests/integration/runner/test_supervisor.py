"""The supervisor with real child processes: restarts, output, graceful stop."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

from services.runner.supervisor import ChildSpec, Supervisor
from shared import exit_codes

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


MISCONFIGURED = """
import sys
print("orderbridge consumer: ORDERBRIDGE_METRICS_PORT='http' is invalid: fix it", flush=True)
sys.exit(78)
"""


async def test_a_child_that_cannot_be_fixed_by_a_restart_stops_everything(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [
            ChildSpec("graceful", [sys.executable, "-c", GRACEFUL]),
            ChildSpec("consumer", [sys.executable, "-c", MISCONFIGURED]),
        ],
        output=out,
        stop_timeout=5,
    )
    code = await asyncio.wait_for(supervisor.run(), 30)
    assert code == exit_codes.CONFIG
    assert supervisor.children[1].restarts == 0
    assert supervisor.fatal == (
        "consumer",
        78,
        "orderbridge consumer: ORDERBRIDGE_METRICS_PORT='http' is invalid: fix it",
    )
    text = out.getvalue()
    assert "restarting in" not in text
    assert text.splitlines()[-1] == (
        "stopped: consumer exited with code 78 (configuration error), which a restart cannot "
        "fix: orderbridge consumer: ORDERBRIDGE_METRICS_PORT='http' is invalid: fix it"
    )
    assert all(
        c.process is not None and c.process.returncode is not None for c in supervisor.children
    )


async def test_the_last_line_of_a_json_child_is_its_message() -> None:
    out = io.StringIO()
    script = (
        "import json, sys; "
        'print(json.dumps({"event": "RabbitMQ refused the login", "level": "error"})); '
        "sys.exit(77)"
    )
    supervisor = Supervisor([ChildSpec("ingress", [sys.executable, "-c", script])], output=out)
    assert await asyncio.wait_for(supervisor.run(), 30) == exit_codes.NOPERM
    assert supervisor.fatal == ("ingress", 77, "RabbitMQ refused the login")


def test_orderbridge_run_stops_when_a_service_is_misconfigured(tmp_path: Path) -> None:
    """The real ``orderbridge run``: ingress exits 78, nothing is restarted, run exits 78."""
    repo = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env.update(PYTHONPATH=str(repo), ORDERBRIDGE_INGRESS_PORT="abc")
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == exit_codes.CONFIG, result.stdout + result.stderr
    assert "restarting in" not in result.stdout
    last = result.stdout.splitlines()[-1]
    assert last.startswith("stopped: ingress exited with code 78 (configuration error)")
    assert "ORDERBRIDGE_INGRESS_PORT='abc'" in last
