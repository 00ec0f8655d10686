"""Composition root of ``orderbridge run``: every service as a supervised child process.

``run --demo`` is the one command for a machine without Docker: it needs a
RabbitMQ (the one at ``ORDERBRIDGE_AMQP_URL``, or a private node it starts
itself from a locally installed ``rabbitmq-server``, data under
``./.orderbridge/``), writes its consumer routes and state under
``./.orderbridge/``, and applies every order and shipment to ``./erp-inbox``.
Ctrl-C stops the children gracefully, then the private broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from services.runner.plan import (
    DEMO_ROUTES,
    DemoPorts,
    Plan,
    demo_inbox,
    demo_plan,
    environment_plan,
)
from services.runner.supervisor import Supervisor
from shared import local_rabbit
from shared.errors import ConfigurationError
from shared.logging import human_output
from shared.settings import BrokerSettings, redact_url

DEFAULT_WORKDIR = Path(".orderbridge")
DEMO_BROKER_PORT = 5699


def broker_reachable(url: str) -> bool:
    parts = urlsplit(url)
    return local_rabbit.port_open(parts.port or 5672, parts.hostname or "127.0.0.1")


@contextlib.contextmanager
def demo_broker(url: str, workdir: Path, say: Callable[[str], None]) -> Iterator[str]:
    """The broker at ``url`` if it answers, else a private node for the demo's lifetime."""
    if broker_reachable(url):
        yield url
        return
    if not local_rabbit.installed():
        raise ConfigurationError(
            f"no RabbitMQ answers at {redact_url(url)} and none is installed: "
            "`apt-get install rabbitmq-server`, or set ORDERBRIDGE_AMQP_URL (the compose "
            "demo's broker: `docker compose --env-file demo.env up rabbitmq` and "
            "amqp://orderbridge:demo-app-password@localhost:5672/)"
        )
    node = _start_private_node(workdir, say)
    try:
        yield node.url
    finally:
        say("stopping the private RabbitMQ")
        node.stop()


def _start_private_node(workdir: Path, say: Callable[[str], None]) -> local_rabbit.LocalRabbit:
    node = local_rabbit.LocalRabbit(workdir / "rabbitmq", port=DEMO_BROKER_PORT, name="demo")
    say(f"no broker answers: starting a private RabbitMQ in {node.directory}")
    try:
        node.start()
    except ConfigurationError as exc:
        if "closed to other users" not in str(exc):
            raise
        # Running as root under a directory the rabbitmq user cannot enter (e.g. /root).
        fallback = Path(tempfile.gettempdir()) / f"orderbridge-{os.getuid()}-rabbitmq"
        say(f"{workdir} is closed to the rabbitmq user; using {fallback} instead")
        node = local_rabbit.LocalRabbit(fallback, port=DEMO_BROKER_PORT, name="demo")
        node.start()
    return node


def print_plan(plan: Plan, out: TextIO = sys.stdout) -> None:
    write = out.write
    write("orderbridge is starting:\n")
    for child in plan.children:
        write(f"  - {child.name}\n")
    for name, reason in plan.skipped.items():
        write(f"  - {name}: not started ({reason})\n")
    for name, reason in plan.ignored.items():
        write(f"  note: {name} is set but the demo does not use it ({reason})\n")
    if plan.urls:
        write("where to look:\n")
        width = max(len(name) for name in plan.urls)
        for name, url in plan.urls.items():
            write(f"  {name:<{width}}  {url}\n")
    write("Ctrl-C stops everything.\n")
    out.flush()


async def supervise(plan: Plan, *, stop_timeout: float = 15.0) -> int:
    supervisor = Supervisor(plan.children, stop_timeout=stop_timeout)
    supervisor.install_signal_handlers()
    return await supervisor.run()


def run(
    *,
    demo: bool,
    workdir: Path = DEFAULT_WORKDIR,
    inbox: Path | None = None,
    port_offset: int = 0,
) -> int:
    def say(message: str) -> None:
        sys.stdout.write(f"orderbridge run | {message}\n")
        sys.stdout.flush()

    # Children write to our pipe, never a terminal: "auto" would make them JSON even
    # when a person watches; they follow what our own stderr is instead.
    if os.environ.get("ORDERBRIDGE_LOG_FORMAT", "auto").strip().lower() in ("", "auto"):
        os.environ["ORDERBRIDGE_LOG_FORMAT"] = "console" if human_output() else "json"
    if not demo:
        plan = environment_plan(os.environ)
        print_plan(plan)
        return asyncio.run(supervise(plan))
    workdir.mkdir(parents=True, exist_ok=True)
    inbox = demo_inbox(inbox, os.environ)
    inbox.mkdir(parents=True, exist_ok=True)
    (workdir / "demo-routes.toml").write_text(DEMO_ROUTES)
    url = BrokerSettings().amqp_url.get_secret_value()
    with demo_broker(url, workdir, say) as broker_url:
        ports = DemoPorts().shifted(port_offset)
        plan = demo_plan(
            amqp_url=broker_url, workdir=workdir, inbox=inbox, ports=ports, env=os.environ
        )
        print_plan(plan)
        return asyncio.run(supervise(plan))


def main(argv: Sequence[str] | None = None) -> int:
    from services.cli import main as cli_main

    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
