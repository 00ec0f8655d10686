"""The image and CI install pinned versions: constraints.txt pins every dependency."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def canonical(name: str) -> str:
    """PEP 503: case, ``-``, ``_`` and ``.`` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    names = set()
    for requirement in requirements:
        match = NAME.match(requirement.strip())
        assert match, requirement
        names.add(canonical(match.group()))
    return names


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version and not re.search(r"[<>=!~*,;@ ]", version), (
            f"not an exact pin: {line!r}"
        )
        assert canonical(name) not in pins, f"pinned twice: {name}"
        pins[canonical(name)] = version
    return pins


def test_every_pyproject_dependency_is_pinned_exactly() -> None:
    missing = declared() - set(pinned())
    assert not missing, f"constraints.txt lacks {sorted(missing)}: regenerate it (see its header)"


def test_the_project_itself_is_not_pinned() -> None:
    assert "orderbridge" not in pinned()


def test_the_image_and_the_makefile_install_with_the_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY constraints.txt" in dockerfile
    installs = [line for line in dockerfile.splitlines() if re.search(r"pip (install|wheel)", line)]
    for line in installs:
        # the runtime stage installs the build stage's wheels, offline
        assert "-c constraints.txt" in line or "--no-index" in line, line
    makefile = (REPO / "Makefile").read_text()
    pip_installs = [line for line in makefile.splitlines() if "$(PIP) install" in line]
    assert pip_installs
    for line in pip_installs:
        assert "$(CONSTRAINTS)" in line, line
    assert "CONSTRAINTS := $(if $(wildcard constraints.txt),-c constraints.txt)" in makefile
