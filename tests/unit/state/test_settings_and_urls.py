"""``ORDERBRIDGE_STATE_URL``: parsing, defaults, dispatch and redaction (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.settings import StateSettings
from shared.state import open_state_store
from shared.state.memory import MemoryStateStore
from shared.state.sqlite import parse_sqlite_url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///./orderbridge-state.db", Path("orderbridge-state.db")),
        ("sqlite:///rel/dir/state.db", Path("rel/dir/state.db")),
        ("sqlite:////abs/dir/state.db", Path("/abs/dir/state.db")),
        ("sqlite:////var/lib/order%20bridge/state.db", Path("/var/lib/order bridge/state.db")),
    ],
)
def test_sqlite_paths(url: str, path: Path) -> None:
    options = parse_sqlite_url(url)
    assert options.path == path
    assert (options.timeout, options.synchronous) == (10.0, "FULL")


def test_sqlite_options() -> None:
    options = parse_sqlite_url("sqlite:////x.db?timeout=2.5&synchronous=normal")
    assert (options.timeout, options.synchronous) == (2.5, "NORMAL")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/x.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///x.db?timeout=soon",
        "sqlite:///x.db?timeout=0",
        "sqlite:///x.db?synchronous=off",
        "sqlite:///x.db?journal=delete",
    ],
)
def test_bad_sqlite_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_sqlite_url(url)


async def test_unknown_schemes_are_refused_without_echoing_secrets() -> None:
    with pytest.raises(ConfigurationError, match="'mysql'") as info:
        await open_state_store("mysql://user:hunter2@db/x")
    assert "hunter2" not in str(info.value)


async def test_memory_dispatch() -> None:
    assert isinstance(await open_state_store("memory://"), MemoryStateStore)


def test_settings_default_and_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERBRIDGE_STATE_URL", raising=False)
    assert StateSettings().state_url.get_secret_value() == "sqlite:///./orderbridge-state.db"
    monkeypatch.setenv("ORDERBRIDGE_STATE_URL", "postgresql://ob:hunter2@db:5432/state")
    settings = StateSettings()
    assert settings.redacted_url() == "postgresql://ob:***@db:5432/state"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
