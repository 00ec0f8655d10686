"""A separate process that works on a state store, for the multi-process tests.

Run as ``python -m tests.support.state_worker URL ACTION …`` from the repository
root. It prints one line per milestone on stdout (flushed), so the test can
wait for "ready" instead of sleeping, and reads "go" on stdin where it must
start together with other workers.

Actions:

* ``open``: open (and migrate) the store, print "opened", close.
* ``race ROUTE EVENTS SEED``: after "go", try ``record_applied`` for every event
  (one document each; by webhook delivery in odd seeds, as a poll in even ones)
  in a shuffled order; print the JSON list of events this process won.
* ``churn ROUTE``: forever, for i = 1, 2, …: ``record_applied`` (delivery m<i>,
  the header and one line at version i), then ``set_cursor`` to i, then
  ``save_tokens`` with i; print i after each round. The test kills it with SIGKILL.
* ``hold LEASE HOLDER TTL``: hold the lease with a ``LeaseKeeper``, print
  "held", then idle until killed.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime, timedelta

from shared.applied import HEADER, PartState
from shared.logging import configure_logging
from shared.settings import LogSettings
from shared.state import open_state_store
from shared.state.lease import LeaseKeeper
from shared.state.port import Record, StateStore, Tokens

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def churn_parts(i: int) -> dict[str, PartState]:
    """Round ``i``: the header and line ``l<i % 3>`` move to version i, i ms past EPOCH."""
    moment = EPOCH + timedelta(milliseconds=i)
    return {HEADER: PartState(i, moment, f"h{i}"), f"l{i % 3}": PartState(i, moment, f"l{i}")}


async def race(store: StateStore, route: str, events: int, seed: int) -> None:
    order = list(range(events))
    random.Random(seed).shuffle(order)
    say("ready")
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    won = []
    for i in order:
        delivery = f"message-{i}" if seed % 2 else None
        record = Record(delivery, f"doc-{i}", {HEADER: PartState(i, EPOCH, f"d{i}")})
        if await store.record_applied(route, record):
            won.append(i)
    say(json.dumps(won))


async def churn(store: StateStore, route: str) -> None:
    i = 0
    while True:
        i += 1
        await store.record_applied(route, Record(f"m{i}", "doc", churn_parts(i)))
        await store.set_cursor(route, f"{i:08d}")
        await store.save_tokens(route, Tokens(f"access-{i}", f"refresh-{i}"))
        say(str(i))


async def hold(store: StateStore, lease: str, holder: str, ttl: float) -> None:
    keeper = LeaseKeeper(store, lease, holder, ttl=ttl, renew_every=ttl / 4)
    await keeper.acquire()
    say("held")
    await keeper.wait_lost()
    say("lost")


async def main(argv: list[str]) -> None:
    url, action, *args = argv
    configure_logging(LogSettings(log_level="WARNING"), service="state-worker")  # stderr
    store = await open_state_store(url, wait_seconds=10)
    try:
        if action == "open":
            say("opened")
        elif action == "race":
            await race(store, args[0], int(args[1]), int(args[2]))
        elif action == "churn":
            await churn(store, args[0])
        elif action == "hold":
            await hold(store, args[0], args[1], float(args[2]))
        else:
            raise SystemExit(f"unknown action {action!r}")
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
