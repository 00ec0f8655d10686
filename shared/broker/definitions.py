"""Render ``deploy/rabbitmq/definitions.json`` from the code's topology.

    python -m shared.broker.definitions          # rewrite the file
    python -m shared.broker.definitions --check  # exit 1 when it differs from the code

RabbitMQ loads the file at boot in the compose deployment, so the broker has
the exchanges and the archive stream before any service connects; services
still declare them (idempotently) for deployments without the file.

A node that imports definitions at boot does not create its default user
(rabbitmq-server#4904), so the file carries the compose deployment's user:
``guest``/``guest`` (a salted SHA-256 hash, RabbitMQ's format), allowed
everything on ``/``. Change it (and ``ORDERBRIDGE_AMQP_URL``) for production.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path
from typing import Any

import orjson

from shared.broker.topology import core_topology, to_definitions

DEFINITIONS_PATH = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"


DEPLOYMENT_USER = ("guest", "guest")
_SALT = b"obr1"  # fixed, so the generated file is stable


def password_hash(password: str, salt: bytes = _SALT) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions() -> dict[str, Any]:
    result = to_definitions(core_topology())
    user, password = DEPLOYMENT_USER
    result["users"] = [
        {
            "name": user,
            "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"],
        }
    ]
    result["permissions"] = [
        {"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    ]
    return result


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
