"""Adapters by name: built-ins, and plug-ins found through the entry-point group."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.consumers.adapters import create_adapter
from services.consumers.adapters.file import FileAdapter
from shared.errors import ConfigurationError

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "erp_plugin"


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[None]:
    """Install the example plug-in the way pip would: a dist-info with entry_points.txt."""
    dist = tmp_path / "acme_erp-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-erp\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[orderbridge.adapters]\nacme = acme_erp:AcmeAdapter\n")
    sys.path[:0] = [str(tmp_path), str(EXAMPLE)]
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop("acme_erp", None)


def test_builtin_adapters_by_name(tmp_path: Path) -> None:
    adapter = create_adapter("file", {"path": str(tmp_path / "inbox"), "csv": True})
    assert isinstance(adapter, FileAdapter) and adapter.csv


@pytest.mark.usefixtures("installed_plugin")
def test_a_plugin_is_found_through_the_entry_point_group() -> None:
    adapter = create_adapter("acme", {"endpoint": "https://erp.acme.example/api"})
    assert type(adapter).__name__ == "AcmeAdapter"
    assert adapter.endpoint == "https://erp.acme.example/api"  # type: ignore[attr-defined]


def test_unknown_types_and_bad_options_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown adapter type 'sap'"):
        create_adapter("sap", {})
    with pytest.raises(ConfigurationError, match="adapter 'file'"):
        create_adapter("file", {"path": str(tmp_path), "colour": "blue"})
