"""What ``orderbridge check`` looks at, and the report it prints.

A tool, not a service: it builds every service's settings group to validate
them all at once (so it imports their settings modules), then opens and closes
the connections a service would open at start, without waiting for them
(``ORDERBRIDGE_STARTUP_WAIT_SECONDS`` does not apply). Opening a SQLite state
store creates its file, as a service would.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_settings import BaseSettings

from shared import exit_codes
from shared.errors import ConfigurationError, OrderbridgeError
from shared.fatal import FATAL, exit_code, one_line
from shared.settings import BrokerSettings, StateSettings


@dataclass(frozen=True)
class Finding:
    what: str
    detail: str
    code: int = exit_codes.OK
    """0 when fine, else the exit code of the problem."""

    @property
    def ok(self) -> bool:
        return self.code == exit_codes.OK


def settings_groups() -> list[type[BaseSettings]]:
    """Every settings group of every command (imported here, not at module import)."""
    from services.apicbase_fetcher.settings import FetcherSettings
    from services.consumers.settings import ConsumerSettings
    from services.ingress.settings import IngressSettings
    from services.poller.settings import PollerSettings
    from shared.clients.apicbase import ApicbaseSettings
    from shared.clients.tradecloud import TradecloudSettings
    from shared.settings import LogSettings

    return [
        LogSettings,
        BrokerSettings,
        StateSettings,
        IngressSettings,
        PollerSettings,
        FetcherSettings,
        ConsumerSettings,
        TradecloudSettings,
        ApicbaseSettings,
    ]


def check_settings() -> Finding:
    problems: list[str] = []
    for group in settings_groups():
        try:
            group()
        except FATAL as exc:
            problems.append(one_line(exc))
    if problems:
        return Finding("settings", "; ".join(dict.fromkeys(problems)), exit_codes.CONFIG)
    return Finding("settings", "every ORDERBRIDGE_* variable is valid")


def check_routes(config: str | None) -> Finding:
    from services.consumers.config import load_config
    from services.consumers.settings import ConsumerSettings

    try:
        path = config or ConsumerSettings().consumer_config
    except ConfigurationError:
        path = config  # reported under settings
    if not path:
        return Finding("routes", "none (pass --config FILE or set ORDERBRIDGE_CONSUMER_CONFIG)")
    try:
        routes = load_config(path).routes
    except ConfigurationError as exc:
        return Finding("routes", one_line(exc), exit_code(exc))
    names = ", ".join(route.name for route in routes)
    return Finding("routes", f"{path}: {len(routes)} route(s): {names}")


async def check_broker() -> Finding:
    from shared.broker.capabilities import ENABLE_CONSISTENT_HASH, consistent_hash_available
    from shared.broker.connection import connect

    try:
        broker = BrokerSettings()
    except ConfigurationError:
        return Finding("broker", "not checked: fix the settings first", exit_codes.CONFIG)
    try:
        connection = await connect(broker, name="check")
        await connection.close()
        plugin = await consistent_hash_available(broker.amqp_url.get_secret_value())
    except (OrderbridgeError, OSError) as exc:
        return Finding("broker", one_line(exc), exit_code(exc))
    hashing = (
        "consistent-hash exchange available (routes shard across queues)"
        if plugin
        else f"no consistent-hash exchange (routes use one queue each; `{ENABLE_CONSISTENT_HASH}`)"
    )
    return Finding("broker", f"{broker.redacted_url()} answers; {hashing}")


async def check_state() -> Finding:
    from shared.state import open_state_store

    try:
        state = StateSettings()
    except ConfigurationError:
        return Finding("state store", "not checked: fix the settings first", exit_codes.CONFIG)
    try:
        store = await open_state_store(state.state_url.get_secret_value())
        await store.close()
    except (OrderbridgeError, OSError) as exc:
        return Finding("state store", one_line(exc), exit_code(exc))
    return Finding("state store", f"{state.redacted_url()} opens")


async def check(*, config: str | None) -> list[Finding]:
    from shared.logging import configure_logging
    from shared.settings import LogSettings

    # Only warnings (the report is the output); settings errors are reported, not fatal.
    configure_logging(LogSettings.model_construct(log_level="WARNING"), service="check")
    return [check_settings(), check_routes(config), await check_broker(), await check_state()]


def render(findings: list[Finding]) -> str:
    from services.cli import version

    width = max(len(finding.what) for finding in findings)
    lines = [f"orderbridge {version()}"]
    for finding in findings:
        mark = "ok  " if finding.ok else "FAIL"
        lines.append(f"  {mark}  {finding.what:<{width}}  {finding.detail}")
    problems = [finding for finding in findings if not finding.ok]
    if problems:
        lines.append(f"{len(problems)} problem(s); exit code {problems[0].code}")
    else:
        lines.append("ready")
    return "\n".join(lines) + "\n"
