import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import configure_logging, get_logger
from shared.settings import BrokerSettings, LogSettings, redact_url


def test_settings_come_from_orderbridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBRIDGE_AMQP_URL", "amqp://app:s3cret@rabbit:5672/prod")
    monkeypatch.setenv("ORDERBRIDGE_PUBLISH_TIMEOUT_SECONDS", "2.5")
    settings = BrokerSettings()
    assert settings.publish_timeout_seconds == 2.5
    assert "s3cret" not in repr(settings)
    assert settings.redacted_url() == "amqp://app:***@rabbit:5672/prod"
    assert redact_url("amqp://localhost/") == "amqp://localhost/"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.mark.usefixtures("restore_logging")
def test_logs_are_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings(log_level="INFO", log_format="json"), service="tests")
    get_logger("orderbridge.test").info("published", routing_key="tradecloud.order.Confirmed.Open")
    logging.getLogger("aiohttp.access").warning("stdlib logger too")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert lines[0]["event"] == "published"
    assert lines[0]["service"] == "tests"
    assert lines[0]["routing_key"] == "tradecloud.order.Confirmed.Open"
    assert lines[0]["level"] == "info"
    assert lines[1]["event"] == "stdlib logger too"
    assert lines[1]["level"] == "warning"
