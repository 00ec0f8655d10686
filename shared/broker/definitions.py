"""Render ``deploy/rabbitmq/definitions.json`` from the code's topology.

    python -m shared.broker.definitions          # rewrite the file
    python -m shared.broker.definitions --check  # exit 1 when it differs from the code

The compose deployment's RabbitMQ imports the file before any service may
connect, so the broker has the exchanges and the archive stream first;
services still declare them (idempotently) for deployments without the file.

The file holds the topology only, no users: ``deploy/rabbitmq/start.sh``
imports it once the node is up (not at boot: a node importing definitions at
boot creates no default user, rabbitmq-server#4904), after creating
the application user from a secret with ``APP_PERMISSIONS`` (no password is
committed, and ``guest`` is not used). Those permissions allow only the
``orderbridge.*`` names the services declare, publish to and consume from,
and publishing to the default exchange (``amq.default``), which the consumers
use to send a delivery to its retry queue.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import orjson

from shared.broker.topology import core_topology, to_definitions

DEFINITIONS_PATH = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


APP_PERMISSIONS: Final = {
    "configure": r"^orderbridge\..*",
    "write": r"^(orderbridge\..*|amq\.default)$",
    "read": r"^orderbridge\..*",
}
"""The application user's configure/write/read regexes on ``/`` (RabbitMQ's permission model)."""


def definitions() -> dict[str, Any]:
    return to_definitions(core_topology())


def render() -> bytes:
    return orjson.dumps(definitions(), option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if not DEFINITIONS_PATH.exists() or DEFINITIONS_PATH.read_bytes() != render():
            print(
                f"{DEFINITIONS_PATH} is stale: run python -m shared.broker.definitions",
                file=sys.stderr,
            )
            return 1
        return 0
    DEFINITIONS_PATH.parent.mkdir(parents=True, exist_ok=True)
    DEFINITIONS_PATH.write_bytes(render())
    print(f"wrote {DEFINITIONS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
