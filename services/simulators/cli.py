"""``orderbridge simulate tradecloud|apicbase``: run a platform simulator."""

from __future__ import annotations

import importlib
from typing import Any

# Modules exposing ``register(subparsers)`` for one platform each.
SIMULATOR_MODULES: tuple[str, ...] = (
    "services.simulators.tradecloud.cli",
    "services.simulators.apicbase.cli",
)


def register(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run a faithful simulator of an upstream platform (tests, demos, rehearsals)",
    )
    platforms = simulate.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    for module in SIMULATOR_MODULES:
        importlib.import_module(module).register(platforms)
