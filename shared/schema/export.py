"""Generate the committed JSON Schema of the canonical event.

python -m shared.schema.export          # rewrite shared/schema/canonical-event.schema.json
python -m shared.schema.export --check  # exit 1 when the committed file is stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import orjson

from shared.schema import models
from shared.schema.models import SCHEMA_VERSION, CanonicalEvent

SCHEMA_PATH = Path(__file__).with_name("canonical-event.schema.json")
SCHEMA_ID = "https://orderbridge.dev/schema/canonical-event/v1.json"


def json_schema() -> dict[str, Any]:
    """The schema of what is on the wire (serialization mode: decimals are strings).

    Keys added to a leaf type within schema version 1 are ``NotRequired``: events
    written before them lack them, so the schema must not require them (pydantic's
    serialization schema would: every producer of this release writes them).
    """
    schema = CanonicalEvent.model_json_schema(mode="serialization")
    for name, definition in schema.get("$defs", {}).items():
        optional: frozenset[str] = getattr(
            getattr(models, name, None), "__optional_keys__", frozenset()
        )
        if optional and "required" in definition:
            definition["required"] = [key for key in definition["required"] if key not in optional]
    schema = _plain_descriptions(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "description": (
            f"orderbridge canonical event, schema_version {SCHEMA_VERSION}. Published on the "
            "topic exchange 'orderbridge.events' with routing key "
            "<source>.<kind>.<process_status>.<logistics_status>. Decimals are strings; "
            "'raw' is the upstream document with its numbers as exact JSON numbers."
        ),
        **schema,
    }


def _plain_descriptions(node: Any) -> Any:
    """Descriptions as plain text: the models' docstrings use reStructuredText literals
    (``name``) and hard line breaks, which a JSON Schema reader should not see."""
    if isinstance(node, dict):
        return {
            key: _plain(value)
            if key == "description" and isinstance(value, str)
            else _plain_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_plain_descriptions(item) for item in node]
    return node


def _plain(text: str) -> str:
    literal_free = re.sub(r"``([^`]+)``", r"\1", text)
    paragraphs = [" ".join(part.split()) for part in literal_free.split("\n\n")]
    return "\n\n".join(paragraphs)


def render() -> bytes:
    return orjson.dumps(json_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str]) -> int:
    if "--check" in argv:
        current = SCHEMA_PATH.read_bytes() if SCHEMA_PATH.exists() else b""
        if current != render():
            print(f"{SCHEMA_PATH} is stale: run python -m shared.schema.export", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_bytes(render())
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
