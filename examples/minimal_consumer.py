"""A consumer that knows only the exchange and the JSON Schema: no orderbridge import.

Any team can subscribe this way without touching orderbridge's services: declare
your own durable quorum queue, bind it to the topic exchange
``orderbridge.events`` with the routing patterns you care about
(``<source>.<kind>.<process_status>.<logistics_status>``), and read the
canonical event JSON described by ``shared/schema/canonical-event.schema.json``.
Events are delivered at least once: a redelivered message keeps its
``event_id``, so this example skips an ``event_id`` it has seen. (Not the
``idempotency_key``: it names a document state, and Tradecloud may send several
changes at one version. ``orderbridge consumer`` decides per header and line
from the document's state; see the README, "What exactly once means here".)

    python examples/minimal_consumer.py --queue my-team.shipped --bind '*.order.*.Shipped'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import aio_pika
import jsonschema

SCHEMA = Path(__file__).resolve().parents[1] / "shared" / "schema" / "canonical-event.schema.json"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@localhost/")
    )
    parser.add_argument("--queue", required=True, help="your own queue name")
    parser.add_argument("--bind", action="append", required=True, help="routing pattern(s)")
    parser.add_argument("--max", type=int, default=0, help="stop after N events (0: never)")
    args = parser.parse_args()
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))

    connection = await aio_pika.connect_robust(args.url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=50)
    queue = await channel.declare_queue(
        args.queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    for pattern in args.bind:
        await queue.bind("orderbridge.events", pattern)
    seen: set[str] = set()
    count = 0
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():  # ack after our work succeeded
                event = json.loads(message.body)
                validator.validate(event)
                if event["event_id"] in seen:
                    continue
                seen.add(event["event_id"])
                print(
                    json.dumps(
                        {
                            "routing_key": message.routing_key,
                            "document": event["document_number"] or event["document_id"],
                            "version": event["version"],
                            "status": [event["process_status"], event["logistics_status"]],
                        }
                    ),
                    flush=True,
                )
                count += 1
            if args.max and count >= args.max:
                break
    await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
