"""The README's Settings table lists every ``ORDERBRIDGE_*`` setting the services read."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SETTINGS_MODULES = sorted(
    str(path.relative_to(REPO).with_suffix("")).replace("/", ".")
    for path in [*REPO.glob("services/**/*.py"), *REPO.glob("shared/**/*.py")]
    if "OrderbridgeSettings)" in path.read_text()
)
"""Every module that defines a settings group (a subclass of ``OrderbridgeSettings``)."""


def settings_variables() -> set[str]:
    found: set[str] = set()
    for name in SETTINGS_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseSettings):
                prefix = str(value.model_config.get("env_prefix", ""))
                found |= {f"{prefix}{field}".upper() for field in value.model_fields}
    return found


def test_every_setting_is_in_the_readme_settings_table() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("\n## Settings") : readme.index("\n## Command line")]
    table = set(re.findall(r"`(ORDERBRIDGE_[A-Z0-9_]+)`", section))
    variables = settings_variables()
    assert len(variables) >= 60, SETTINGS_MODULES  # a sanity floor: the modules were found
    assert sorted(variables - table) == []
