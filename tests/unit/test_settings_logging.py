import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from services.ingress.settings import IngressSettings
from shared.clients.apicbase import ApicbaseSettings
from shared.clients.tradecloud import TradecloudSettings
from shared.logging import configure_logging, get_logger, human_output, resolve_format
from shared.settings import (
    BrokerSettings,
    LogSettings,
    SettingsError,
    StateSettings,
    is_secret,
    redact_url,
    variable,
)


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


@pytest.fixture
def no_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Docker secrets folder, and no ORDERBRIDGE_* variables from the caller."""
    for name in list(os.environ):
        if name.startswith("ORDERBRIDGE_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "secrets"
    folder.mkdir()
    monkeypatch.setenv("ORDERBRIDGE_SECRETS_DIR", str(folder))
    return folder


@pytest.mark.parametrize(
    ("given", "level"), [("debug", "DEBUG"), ("Info", "INFO"), ("warn", "WARNING")]
)
def test_log_levels_in_any_case(
    monkeypatch: pytest.MonkeyPatch, no_secrets_dir: Path, given: str, level: str
) -> None:
    monkeypatch.setenv("ORDERBRIDGE_LOG_LEVEL", given)
    monkeypatch.setenv("ORDERBRIDGE_LOG_FORMAT", "JSON")
    settings = LogSettings()
    assert (settings.log_level, settings.log_format) == (level, "json")


def test_the_log_format_defaults_to_auto(no_secrets_dir: Path) -> None:
    assert LogSettings().log_format == "auto"
    assert resolve_format("auto", io.StringIO()) is False  # not a terminal: JSON
    assert resolve_format("console", io.StringIO()) is True
    assert resolve_format("json", io.StringIO()) is False


@pytest.mark.usefixtures("restore_logging")
def test_human_output_follows_the_configured_format() -> None:
    configure_logging(LogSettings(log_format="console"), service="tests")
    assert human_output() is True
    configure_logging(LogSettings(log_format="json"), service="tests")
    assert human_output() is False


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ORDERBRIDGE_INGRESS_PORT", "abc", "ORDERBRIDGE_INGRESS_PORT='abc' is invalid"),
        ("ORDERBRIDGE_INGRESS_PORT", "70000", "less than or equal to 65535"),
        ("ORDERBRIDGE_INGRESS_MAX_BODY_BYTES", "12", "default (16777216)"),
        ("ORDERBRIDGE_TRADECLOUD_ROLE", "seller", "'buyer' or 'supplier'"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, no_secrets_dir: Path, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        IngressSettings()
    assert expected in str(caught.value)
    assert variable in str(caught.value)
    assert caught.value.variables == (variable,)
    assert variable.removeprefix("ORDERBRIDGE_").lower() not in str(caught.value)


def test_a_secret_value_is_never_echoed_in_an_error(
    monkeypatch: pytest.MonkeyPatch, no_secrets_dir: Path
) -> None:
    with pytest.raises(SettingsError) as caught:
        BrokerSettings(amqp_url=12345)  # type: ignore[arg-type]
    assert "ORDERBRIDGE_AMQP_URL is invalid" in str(caught.value)
    assert "12345" not in str(caught.value)


def test_secret_fields_are_found_by_type() -> None:
    secrets = {
        name for name, field in IngressSettings.model_fields.items() if is_secret(field.annotation)
    }
    assert secrets == {
        "tradecloud_webhook_password",
        "tradecloud_webhook_token",
        "apicbase_webhook_secret",
    }
    assert variable("amqp_url") == "ORDERBRIDGE_AMQP_URL"


def test_every_secret_reads_a_file(
    monkeypatch: pytest.MonkeyPatch, no_secrets_dir: Path, tmp_path: Path
) -> None:
    cases = [
        (BrokerSettings, "amqp_url"),
        (StateSettings, "state_url"),
        (TradecloudSettings, "tradecloud_password"),
        (ApicbaseSettings, "apicbase_client_secret"),
        (ApicbaseSettings, "apicbase_refresh_token"),
        (IngressSettings, "tradecloud_webhook_token"),
        (IngressSettings, "apicbase_webhook_secret"),
    ]
    for group, field in cases:
        path = tmp_path / field
        path.write_text(f"  value-of-{field}\n")
        monkeypatch.setenv(f"{variable(field)}_FILE", str(path))
        secret = getattr(group(), field)
        assert secret.get_secret_value() == f"value-of-{field}", field


def test_a_secret_and_its_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, no_secrets_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "url"
    path.write_text("sqlite:///from-file.db")
    monkeypatch.setenv("ORDERBRIDGE_STATE_URL_FILE", str(path))
    monkeypatch.setenv("ORDERBRIDGE_STATE_URL", "sqlite:///plain.db")
    with pytest.raises(
        SettingsError, match="both ORDERBRIDGE_STATE_URL and ORDERBRIDGE_STATE_URL_FILE"
    ):
        StateSettings()
    monkeypatch.setenv("ORDERBRIDGE_STATE_URL", "")  # empty counts as unset (compose's ${X:-})
    assert StateSettings().state_url.get_secret_value() == "sqlite:///from-file.db"


def test_docker_secrets_are_read_when_the_folder_exists(
    monkeypatch: pytest.MonkeyPatch, no_secrets_dir: Path
) -> None:
    (no_secrets_dir / "orderbridge_amqp_url").write_text("amqp://app:from-docker@rabbit/\n")
    assert BrokerSettings().amqp_url.get_secret_value() == "amqp://app:from-docker@rabbit/"
    monkeypatch.setenv("ORDERBRIDGE_AMQP_URL", "amqp://app:from-env@rabbit/")
    assert BrokerSettings().amqp_url.get_secret_value() == "amqp://app:from-env@rabbit/"
    monkeypatch.setenv("ORDERBRIDGE_SECRETS_DIR", str(no_secrets_dir / "missing"))
    monkeypatch.delenv("ORDERBRIDGE_AMQP_URL")
    assert BrokerSettings().amqp_url.get_secret_value() == "amqp://guest:guest@localhost:5672/"
