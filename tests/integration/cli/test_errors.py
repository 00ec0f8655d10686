"""Errors a person can act on: the real ``orderbridge`` command in a subprocess.

Each case must end with exactly one line on stderr that names the variable
(``ORDERBRIDGE_…``, never the Python field) and its fix, and the exit code of
``shared.exit_codes``; a traceback fails the test.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shared import exit_codes
from tests.support.postgres import ADMIN_URL
from tests.support.rabbit import BASE_URL

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CLOSED_PORT = "127.0.0.1:5679"  # nothing listens here
ROUTES = """
[[routes]]
name = "erp-orders"
bindings = ["tradecloud.order.#"]
[routes.adapter]
type = "file"
path = "./inbox"
"""


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        ORDERBRIDGE_SECRETS_DIR="/nonexistent",
        ORDERBRIDGE_AMQP_URL=f"{BASE_URL}/",
        ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN="token",  # ingress starts without a warning
        ORDERBRIDGE_INGRESS_HOST="127.0.0.1",
        ORDERBRIDGE_INGRESS_PORT="0",
    )
    env.update(extra)
    return env


def orderbridge(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def the_one_line(result: subprocess.CompletedProcess[str], code: int) -> dict[str, Any]:
    """The single JSON error line (stderr is not a terminal), after checking the code."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, result.stderr
    record: dict[str, Any] = json.loads(lines[0])
    assert record["level"] == "error"
    assert record["exit_code"] == code
    return record


def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES)
    return path


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = orderbridge(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"orderbridge {version('orderbridge')}"


def test_a_lowercase_log_level_just_works(tmp_path: Path) -> None:
    # debug is accepted; what stops ingress is the port, and the debug log is on.
    result = orderbridge(
        tmp_path, "ingress", ORDERBRIDGE_LOG_LEVEL="debug", ORDERBRIDGE_INGRESS_PORT="abc"
    )
    record = the_one_line(result, exit_codes.CONFIG)
    assert "ORDERBRIDGE_LOG_LEVEL" not in record["event"]


def test_an_invalid_port_names_the_variable_not_the_field(tmp_path: Path) -> None:
    result = orderbridge(tmp_path, "ingress", ORDERBRIDGE_INGRESS_PORT="abc")
    event = the_one_line(result, exit_codes.CONFIG)["event"]
    assert "ORDERBRIDGE_INGRESS_PORT='abc'" in event
    assert "valid integer" in event
    assert "default (8080)" in event
    assert "ingress_port" not in event


def test_an_invalid_log_level_lists_the_levels(tmp_path: Path) -> None:
    result = orderbridge(tmp_path, "ingress", ORDERBRIDGE_LOG_LEVEL="loud")
    event = the_one_line(result, exit_codes.CONFIG)["event"]
    assert "ORDERBRIDGE_LOG_LEVEL='LOUD'" in event
    assert "'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in event


def test_a_wrong_amqp_password_is_refused_at_once_with_the_password_masked(
    tmp_path: Path,
) -> None:
    url = BASE_URL.replace("guest:guest@", "guest:n0t-the-password@") + "/"
    started = time.monotonic()
    result = orderbridge(tmp_path, "ingress", ORDERBRIDGE_AMQP_URL=url)
    event = the_one_line(result, exit_codes.NOPERM)["event"]
    assert "ORDERBRIDGE_AMQP_URL" in event
    assert "guest:***@" in event
    assert "n0t-the-password" not in result.stderr + result.stdout
    assert time.monotonic() - started < 25  # refused credentials are not waited for


def test_an_unreachable_broker_gives_up_with_one_line(tmp_path: Path) -> None:
    result = orderbridge(
        tmp_path,
        "ingress",
        ORDERBRIDGE_AMQP_URL=f"amqp://guest:s3cret@{CLOSED_PORT}/",
        ORDERBRIDGE_STARTUP_WAIT_SECONDS="0",
    )
    event = the_one_line(result, exit_codes.UNAVAILABLE)["event"]
    assert "ORDERBRIDGE_AMQP_URL" in event
    assert "cannot reach RabbitMQ" in event
    assert "s3cret" not in result.stderr


def test_on_a_terminal_an_unreachable_broker_counts_down_then_says_why(tmp_path: Path) -> None:
    """stderr is a pseudo-terminal: readable text, a countdown, then one plain line."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "ingress"],
        cwd=tmp_path,
        env=environment(
            ORDERBRIDGE_AMQP_URL=f"amqp://guest:guest@{CLOSED_PORT}/",
            ORDERBRIDGE_STARTUP_WAIT_SECONDS="3",
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(timeout=30) == exit_codes.UNAVAILABLE, seen
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    text = seen.decode()
    assert "waiting for RabbitMQ at amqp://guest:***@" in text
    assert "giving up in " in text
    assert "Traceback" not in text
    # The countdown is rewritten in place ("\r"), then cleared; the error is the one line.
    final = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    last = final[-1].rsplit("\r\x1b[K", 1)[-1]
    assert last.startswith("orderbridge ingress: cannot reach RabbitMQ at amqp://guest:***@")
    assert "ORDERBRIDGE_AMQP_URL" in last
    assert "{" not in last  # not JSON: a person reads it


def test_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "amqp_url"
    secret.write_text(f"amqp://guest:wrong@{BASE_URL.split('@', 1)[1]}/\n")
    result = orderbridge(
        tmp_path, "ingress", ORDERBRIDGE_AMQP_URL="", ORDERBRIDGE_AMQP_URL_FILE=str(secret)
    )
    # The file's URL was used: its wrong password is refused.
    assert "ORDERBRIDGE_AMQP_URL" in the_one_line(result, exit_codes.NOPERM)["event"]


def test_a_secret_set_twice_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "amqp_url"
    secret.write_text(f"{BASE_URL}/")
    result = orderbridge(tmp_path, "ingress", ORDERBRIDGE_AMQP_URL_FILE=str(secret))
    event = the_one_line(result, exit_codes.CONFIG)["event"]
    assert "both ORDERBRIDGE_AMQP_URL and ORDERBRIDGE_AMQP_URL_FILE are set" in event


def test_an_unreadable_secret_file_names_its_variable(tmp_path: Path) -> None:
    result = orderbridge(
        tmp_path,
        "consumer",
        "--config",
        str(routes_file(tmp_path)),
        ORDERBRIDGE_STATE_URL_FILE=str(tmp_path / "missing"),
    )
    event = the_one_line(result, exit_codes.CONFIG)["event"]
    assert f"ORDERBRIDGE_STATE_URL_FILE={tmp_path / 'missing'}" in event


def test_postgres_refusing_the_login(tmp_path: Path) -> None:
    url = ADMIN_URL.replace("postgres@", "no_such_role_ob:pw@", 1)
    result = orderbridge(
        tmp_path, "consumer", "--config", str(routes_file(tmp_path)), ORDERBRIDGE_STATE_URL=url
    )
    event = the_one_line(result, exit_codes.NOPERM)["event"]
    assert "ORDERBRIDGE_STATE_URL" in event
    assert "no_such_role_ob:***@" in event
    assert ":pw@" not in result.stderr


def test_an_unreachable_state_store(tmp_path: Path) -> None:
    result = orderbridge(
        tmp_path,
        "consumer",
        "--config",
        str(routes_file(tmp_path)),
        ORDERBRIDGE_STATE_URL="postgresql://postgres:pw@127.0.0.1:5499/orderbridge",
        ORDERBRIDGE_STARTUP_WAIT_SECONDS="0",
    )
    event = the_one_line(result, exit_codes.UNAVAILABLE)["event"]
    assert "ORDERBRIDGE_STATE_URL" in event
    assert "cannot reach the state store" in event


def test_an_unwritable_sqlite_path(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    result = orderbridge(
        tmp_path,
        "poller",
        "--once",
        ORDERBRIDGE_TRADECLOUD_ROLE="buyer",
        ORDERBRIDGE_STATE_URL=f"sqlite:///{tmp_path}/a-file/state.db",
    )
    event = the_one_line(result, exit_codes.CONFIG)["event"]
    assert "ORDERBRIDGE_STATE_URL" in event
    assert "a-file/state.db" in event


@pytest.mark.parametrize(
    ("args", "env", "variable"),
    [
        (("ingress",), {"ORDERBRIDGE_INGRESS_MAX_BODY_BYTES": "big"}, "INGRESS_MAX_BODY_BYTES"),
        (("poller", "--once"), {"ORDERBRIDGE_POLL_INTERVAL_SECONDS": "-1"}, "POLL_INTERVAL"),
        (("poller", "--once"), {}, "ORDERBRIDGE_TRADECLOUD_ROLE"),
        (("apicbase-fetcher", "--once"), {"ORDERBRIDGE_APICBASE_FETCH_PAGE_SIZE": "500"}, "PAGE"),
        (("consumer",), {}, "ORDERBRIDGE_CONSUMER_CONFIG"),
        (("consumer",), {"ORDERBRIDGE_METRICS_PORT": "http"}, "ORDERBRIDGE_METRICS_PORT"),
        (("simulate", "tradecloud"), {"ORDERBRIDGE_LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        (("simulate", "apicbase"), {"ORDERBRIDGE_LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        (("run", "--demo"), {"ORDERBRIDGE_PUBLISH_TIMEOUT_SECONDS": "soon"}, "PUBLISH_TIMEOUT"),
        (("dlq", "list", "r"), {"ORDERBRIDGE_PUBLISH_MAX_IN_FLIGHT": "0"}, "MAX_IN_FLIGHT"),
    ],
)
def test_every_subcommand_names_the_variable(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], variable: str
) -> None:
    result = orderbridge(tmp_path, *args, **env)
    assert variable in the_one_line(result, exit_codes.CONFIG)["event"]


def test_a_route_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    result = orderbridge(
        tmp_path, "consumer", "--config", str(routes_file(tmp_path)), "--route", "nope"
    )
    event = the_one_line(result, exit_codes.USAGE)["event"]
    assert "'nope'" in event and "erp-orders" in event


def test_a_bad_routes_file_is_refused_before_connecting(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES.replace('type = "file"', 'type = "fiel"'))
    result = orderbridge(
        tmp_path,
        "consumer",
        "--config",
        str(routes),
        ORDERBRIDGE_AMQP_URL=f"amqp://guest:guest@{CLOSED_PORT}/",  # never reached
    )
    event = the_one_line(result, exit_codes.CONFIG)["event"]
    assert event.startswith(f'{routes}: route "erp-orders", adapter.type: unknown adapter type')
    assert "did you mean 'file'?" in event


def test_check_reports_each_part_and_exits_with_the_first_problem(tmp_path: Path) -> None:
    routes = routes_file(tmp_path)
    good = orderbridge(tmp_path, "check", "--config", str(routes))
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert lines[0].startswith("orderbridge ")
    assert any(line.split()[:2] == ["ok", "settings"] for line in lines)
    assert any("erp-orders" in line and line.split()[0] == "ok" for line in lines)
    assert any("consistent-hash exchange" in line for line in lines)
    assert lines[-1] == "ready"

    routes.write_text(ROUTES.replace('"tradecloud.order.#"', '"tradecloud.order.#"]\nshard = [1'))
    bad = orderbridge(
        tmp_path,
        "check",
        "--config",
        str(routes),
        ORDERBRIDGE_INGRESS_PORT="abc",
        ORDERBRIDGE_AMQP_URL=BASE_URL.replace("guest:guest@", "guest:nope@") + "/",
    )
    assert bad.returncode == exit_codes.CONFIG, bad.stdout
    report = bad.stdout
    assert "FAIL  settings" in report and "ORDERBRIDGE_INGRESS_PORT='abc'" in report
    assert "FAIL  routes" in report and "shard" in report
    assert "FAIL  broker" in report and "ORDERBRIDGE_AMQP_URL" in report and "nope" not in report
    assert "ok    state store" in report
    assert "Traceback" not in bad.stderr
