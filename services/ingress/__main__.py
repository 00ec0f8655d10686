"""Composition root of the ingress service: settings → broker → app → serve → drain.

Run with ``orderbridge ingress`` (or ``python -m services.ingress``). SIGTERM or
SIGINT starts a graceful stop: /readyz turns 503, new webhooks get 503 with
``Retry-After`` (the platforms retry them), publishes in flight reach their
confirm or deadline, then the listener closes and the process exits 0.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from aiohttp import web

from services.ingress.app import STATE, IngressDeps, create_app, ready_check
from services.ingress.fetch import TradecloudFetcher
from services.ingress.metrics import IngressMetrics
from services.ingress.settings import IngressSettings
from services.ingress.verify import ApicbaseSignature, TradecloudAuth
from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.broker.quarantine import BrokerQuarantine
from shared.broker.topology import DEAD_LETTER_EXCHANGE
from shared.clients.tradecloud import TradecloudClient, TradecloudSettings
from shared.gc_tuning import tune_for_throughput
from shared.logging import configure_logging, get_logger
from shared.metrics import PublisherMetrics, new_registry
from shared.ops import start_ops_server
from shared.settings import BrokerSettings, LogSettings
from shared.signals import stop_on_signals

log = get_logger("services.ingress")


def tradecloud_auth(settings: IngressSettings) -> TradecloudAuth:
    password = settings.tradecloud_webhook_password
    token = settings.tradecloud_webhook_token
    return TradecloudAuth(
        username=settings.tradecloud_webhook_username.encode()
        if settings.tradecloud_webhook_username
        else None,
        password=password.get_secret_value().encode() if password else None,
        token=token.get_secret_value().encode() if token and token.get_secret_value() else None,
        allow_anonymous=settings.ingress_insecure_no_auth,
    )


def apicbase_signature(settings: IngressSettings) -> ApicbaseSignature:
    return ApicbaseSignature.of(
        settings.apicbase_secrets(), allow_anonymous=settings.ingress_insecure_no_auth
    )


def fetch_client_settings(settings: TradecloudSettings, budget: float) -> TradecloudSettings:
    """The API client settings of the GET webhook path: its retries end within ``budget``.

    The shared defaults suit the poller, which may retry one call for a
    minute; a webhook request may not. ``asyncio.timeout(budget)`` around the
    fetch is the hard bound; the client is also told to stop retrying after
    half of it (and to time out one request no later), because a retry that
    starts just before the client's deadline still sleeps one backoff and runs
    one request: this way the client usually gives up on its own first, and
    its ``UpstreamUnavailable`` names the cause (5xx, 429, connection refused)
    instead of a bare "budget spent". Nothing is ever raised, only lowered.
    """
    half = budget / 2
    return settings.model_copy(
        update={
            "tradecloud_retry_seconds": min(settings.tradecloud_retry_seconds, half),
            "tradecloud_timeout_seconds": min(settings.tradecloud_timeout_seconds, half),
        }
    )


def build_fetcher(settings: TradecloudSettings, budget: float) -> TradecloudFetcher | None:
    """The Tradecloud API client for the legacy GET webhook, when credentials are set."""
    if not settings.configured():
        return None
    return TradecloudFetcher(TradecloudClient(fetch_client_settings(settings, budget)))


async def serve(settings: IngressSettings, broker: BrokerSettings) -> int:
    settings.require_credentials()
    if settings.ingress_insecure_no_auth:
        log.warning(
            "INSECURE: webhook sources without credentials accept unauthenticated calls; "
            "development only"
        )
    registry = new_registry("ingress")
    fetcher = build_fetcher(TradecloudSettings(), settings.ingress_fetch_timeout_seconds)
    connection = await connect(broker, name="ingress", wait_seconds=broker.startup_wait_seconds)
    try:
        await declare_topology(connection, broker.topology())
        publisher = await RabbitPublisher.open(
            connection, broker, metrics=PublisherMetrics(registry)
        )
        # GET webhooks naming a document Tradecloud does not have are recorded in
        # orderbridge.invalid, as the poller quarantines what it cannot normalize:
        # a confirmed publish on its own channel to the dead-letter exchange.
        dead_letters = await RabbitPublisher.open(connection, broker, exchange=DEAD_LETTER_EXCHANGE)
        deps = IngressDeps(
            publisher=publisher,
            registry=registry,
            tradecloud=tradecloud_auth(settings),
            apicbase=apicbase_signature(settings),
            fetcher=fetcher,
            quarantine=BrokerQuarantine(dead_letters, source="tradecloud"),
            fetch_timeout_seconds=settings.ingress_fetch_timeout_seconds,
            max_body_bytes=settings.ingress_max_body_bytes,
            body_timeout_seconds=settings.ingress_body_timeout_seconds,
            role=settings.tradecloud_role,
            echo_policy=settings.echo_policy or "off",
            ready=publisher.not_ready_reason,
            metrics=IngressMetrics(registry),
        )
        app = create_app(deps)
        tune_for_throughput()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(
            runner, settings.ingress_host, settings.ingress_port, backlog=1024, reuse_address=True
        )
        await site.start()
        host, port = runner.addresses[0][:2]
        ops: web.AppRunner | None = None
        if settings.metrics_port:
            ops = await start_ops_server(
                registry,
                ready_check(app),
                host=settings.metrics_host,
                port=settings.metrics_port,
            )
        log.info(
            "ingress listening",
            host=host,
            port=port,
            metrics_port=settings.metrics_port or "off",
            broker=broker.redacted_url(),
            tradecloud_auth=_describe(deps.tradecloud.configured, settings),
            apicbase_auth=_describe(deps.apicbase.configured, settings),
            get_webhook="enabled" if deps.fetcher is not None else "no Tradecloud API client",
            get_webhook_fetch_timeout_seconds=deps.fetch_timeout_seconds,
        )
        with stop_on_signals(asyncio.Event()) as stop:
            await stop.wait()
        # A GET webhook in flight may still be fetching (its budget), then publishing.
        drain_seconds = (
            settings.ingress_fetch_timeout_seconds + broker.publish_timeout_seconds + 5.0
        )
        log.info("draining: new webhooks get 503", timeout_seconds=drain_seconds)
        drained = await app[STATE].drain(drain_seconds)
        if not drained:
            log.warning("drain timed out; closing with requests still in flight")
        await runner.cleanup()
        if ops is not None:  # metrics stay scrapeable until the webhooks are drained
            await ops.cleanup()
        await publisher.close()
        await dead_letters.close()
    finally:
        await connection.close()
        if fetcher is not None:
            await fetcher.close()
    log.info("ingress stopped")
    return 0


def _describe(configured: bool, settings: IngressSettings) -> str:
    if configured:
        return "on"
    return "OPEN (insecure)" if settings.ingress_insecure_no_auth else "not configured: refusing"


def run(*, host: str | None = None, port: int | None = None, insecure: bool = False) -> int:
    """Build settings from the environment (CLI flags win) and serve until SIGTERM.

    Settings, broker and listen errors propagate: ``services.cli`` prints them
    as one line with their exit code.
    """
    configure_logging(LogSettings(), service="ingress")
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["ingress_host"] = host
    if port is not None:
        overrides["ingress_port"] = port
    if insecure:
        overrides["ingress_insecure_no_auth"] = True
    settings = IngressSettings(**overrides)  # type: ignore[arg-type]
    return asyncio.run(serve(settings, BrokerSettings()))


def main(argv: Sequence[str] | None = None) -> int:
    from services.cli import main as cli_main

    return cli_main(["ingress", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
