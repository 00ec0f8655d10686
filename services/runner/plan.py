"""What ``orderbridge run`` starts: one ``ChildSpec`` per service (pure, no I/O).

``demo_plan`` wires both simulators to the services the way a rehearsal would:
the simulators push webhooks to ingress with the credentials ingress expects,
the poller and the fetcher call the simulators' APIs, and one consumer applies
every order and shipment to a file inbox. Both simulators run in documented
mode (``--documented``) so the demo meets what the platforms' documentation
allows rather than only what our own assumptions expect: header-only and
unsubscribed changes, zone-less stamps, out-of-order webhooks, polls without
``total``, Apicbase orders placed twice. ``environment_plan`` starts the
services the environment configures and says which it skipped and why.

The demo's values are defaults: an ``ORDERBRIDGE_*`` variable the user set
(ports, hosts, the state URL, the inbox, the routes file, poll and fetch
intervals) wins, and every child that must agree on it (the simulators'
webhook URLs and ingress' port, say) gets the same value. Only the wiring
between the simulators and the services (API URLs, credentials, role, first
poll cursor) stays the demo's, and the plan names such variables it ignores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.runner.supervisor import ChildSpec, orderbridge_argv
from shared.errors import ConfigurationError

DEMO_ROUTES = """\
[[routes]]
name = "demo-orders"
bindings = ["tradecloud.order.#", "apicbase.order.#"]
shards = 2
retry_delays = [2, 10]
[routes.adapter]
type = "file"
path = "${ORDERBRIDGE_ERP_INBOX}/orders"

[[routes]]
name = "demo-shipments"
bindings = ["tradecloud.shipment.#"]
shards = 1
retry_delays = [2, 10]
[routes.adapter]
type = "file"
path = "${ORDERBRIDGE_ERP_INBOX}/shipments"
"""


@dataclass(frozen=True)
class DemoPorts:
    ingress: int = 8080
    tradecloud: int = 8090
    apicbase: int = 8091
    poller_metrics: int = 9101
    fetcher_metrics: int = 9102
    consumer_metrics: int = 9103
    ingress_metrics: int = 9104

    def shifted(self, offset: int) -> DemoPorts:
        """Every port moved by ``offset`` (a second demo, or a test beside a running one)."""
        return DemoPorts(*(port + offset for port in vars(self).values()))


@dataclass(frozen=True)
class Plan:
    children: list[ChildSpec]
    urls: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    """Variables set in the environment that the demo's wiring does not take, and why."""


# Shared by the simulators and the services in the demo; not secrets worth the name.
TC_USER, TC_PASSWORD = "integration@buyer.example", "demo-api-password"
TC_HOOK_USER, TC_HOOK_PASSWORD = "tradecloud", "demo-webhook-password"
APIC_CLIENT, APIC_SECRET, APIC_REFRESH = "orderbridge", "demo-apicbase-secret", "demo-refresh"


DEFAULT_INBOX = Path("erp-inbox")

_SIMULATOR_WIRING = {
    "ORDERBRIDGE_TRADECLOUD_API_URL": "the poller and ingress call the Tradecloud simulator",
    "ORDERBRIDGE_TRADECLOUD_USERNAME": "the simulator's integration user",
    "ORDERBRIDGE_TRADECLOUD_PASSWORD": "the simulator's integration user",
    "ORDERBRIDGE_TRADECLOUD_ROLE": "the demo is the buyer",
    "ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME": "the simulator sends the demo's credentials",
    "ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD": "the simulator sends the demo's credentials",
    "ORDERBRIDGE_APICBASE_API_URL": "the fetcher calls the Apicbase simulator",
    "ORDERBRIDGE_APICBASE_CLIENT_ID": "the simulator's OAuth client",
    "ORDERBRIDGE_APICBASE_CLIENT_SECRET": "the simulator's OAuth client",
    "ORDERBRIDGE_APICBASE_REFRESH_TOKEN": "the simulator's OAuth client",
    "ORDERBRIDGE_APICBASE_WEBHOOK_SECRET": "the simulator signs with the demo's secret",
    "ORDERBRIDGE_POLL_START": "the poller reads the simulator's whole history",
}


def demo_inbox(flag: Path | None, env: Mapping[str, str]) -> Path:
    """``--inbox``, else ``ORDERBRIDGE_ERP_INBOX``, else ``./erp-inbox``."""
    if flag is not None:
        return flag
    return Path(env["ORDERBRIDGE_ERP_INBOX"]) if env.get("ORDERBRIDGE_ERP_INBOX") else DEFAULT_INBOX


def _reachable(host: str) -> str:
    """Where a local client reaches a server listening on ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _metrics_ports(env: Mapping[str, str], ports: DemoPorts) -> tuple[int, int, int, int]:
    """Poller, fetcher, consumer, ingress: ``ORDERBRIDGE_METRICS_PORT`` P gives P..P+3; 0 none."""
    chosen = env.get("ORDERBRIDGE_METRICS_PORT", "").strip()
    if not chosen:
        return (
            ports.poller_metrics,
            ports.fetcher_metrics,
            ports.consumer_metrics,
            ports.ingress_metrics,
        )
    base = int(chosen) if chosen.isdigit() else -1
    if base == 0:
        return 0, 0, 0, 0
    if not 0 < base <= 65532:
        raise ConfigurationError(
            f"ORDERBRIDGE_METRICS_PORT={chosen!r}: a port number (0 disables metrics)"
        )
    return base, base + 1, base + 2, base + 3


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    chosen = env.get(name, "").strip()
    if not chosen:
        return default
    if not chosen.isdigit() or not 0 < int(chosen) <= 65535:
        raise ConfigurationError(f"{name}={chosen!r}: a port number between 1 and 65535")
    return int(chosen)


def demo_plan(
    *,
    amqp_url: str,
    workdir: Path,
    inbox: Path,
    ports: DemoPorts = DemoPorts(),
    env: Mapping[str, str] | None = None,
) -> Plan:
    """Simulators, ingress, poller, fetcher and consumer, wired to each other on loopback.

    ``env`` is the user's environment: a variable set there wins over the
    demo's value (see the module docstring).
    """
    env = env or {}

    def setting(name: str, default: str) -> str:
        return env.get(name) or default

    ingress_port = _port(env, "ORDERBRIDGE_INGRESS_PORT", ports.ingress)
    ingress_host = _reachable(env.get("ORDERBRIDGE_INGRESS_HOST", ""))
    metrics_host = _reachable(env.get("ORDERBRIDGE_METRICS_HOST", ""))
    poller_metrics, fetcher_metrics, consumer_metrics, ingress_metrics = _metrics_ports(env, ports)
    ingress = f"http://{ingress_host}:{ingress_port}"
    tradecloud_api = f"http://127.0.0.1:{ports.tradecloud}/v2"
    apicbase_api = f"http://127.0.0.1:{ports.apicbase}"
    routes = setting("ORDERBRIDGE_CONSUMER_CONFIG", str((workdir / "demo-routes.toml").resolve()))
    common = {
        "ORDERBRIDGE_AMQP_URL": amqp_url,
        "ORDERBRIDGE_STATE_URL": setting(
            "ORDERBRIDGE_STATE_URL", f"sqlite:///{(workdir / 'state.db').resolve()}"
        ),
        "ORDERBRIDGE_TRADECLOUD_ROLE": "buyer",
        "ORDERBRIDGE_TRADECLOUD_API_URL": tradecloud_api,
        "ORDERBRIDGE_TRADECLOUD_USERNAME": TC_USER,
        "ORDERBRIDGE_TRADECLOUD_PASSWORD": TC_PASSWORD,
    }
    children = [
        ChildSpec(
            "tradecloud-sim",
            orderbridge_argv(
                "simulate",
                "tradecloud",
                "--port",
                str(ports.tradecloud),
                "--orders",
                "60",
                "--documented",
                "--wall-clock",
                "--drive-rate",
                "1",
                "--username",
                TC_USER,
                "--password",
                TC_PASSWORD,
                "--webhook-orders-url",
                f"{ingress}/webhooks/tradecloud/orders",
                "--webhook-documents-url",
                f"{ingress}/webhooks/tradecloud/orders",
                "--webhook-shipments-url",
                f"{ingress}/webhooks/tradecloud/shipments",
                "--webhook-username",
                TC_HOOK_USER,
                "--webhook-password",
                TC_HOOK_PASSWORD,
            ),
        ),
        ChildSpec(
            "apicbase-sim",
            orderbridge_argv(
                "simulate",
                "apicbase",
                "--port",
                str(ports.apicbase),
                "--orders",
                "30",
                "--documented",
                "--client-id",
                APIC_CLIENT,
                "--client-secret",
                APIC_SECRET,
                "--refresh-token",
                APIC_REFRESH,
                "--webhook-url",
                f"{ingress}/webhooks/apicbase/orders",
                "--drive-interval",
                "5",
                "--webhook-share",
                "0.5",
            ),
        ),
        ChildSpec(
            "ingress",
            orderbridge_argv("ingress"),
            env=common
            | {
                "ORDERBRIDGE_INGRESS_PORT": str(ingress_port),
                "ORDERBRIDGE_METRICS_PORT": str(ingress_metrics),
                "ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME": TC_HOOK_USER,
                "ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD": TC_HOOK_PASSWORD,
                "ORDERBRIDGE_APICBASE_WEBHOOK_SECRET": APIC_SECRET,
            },
        ),
        ChildSpec(
            "poller",
            orderbridge_argv("poller"),
            env=common
            | {
                "ORDERBRIDGE_POLL_START": "2020-01-01T00:00:00.000Z",
                "ORDERBRIDGE_POLL_INTERVAL_SECONDS": setting(
                    "ORDERBRIDGE_POLL_INTERVAL_SECONDS", "15"
                ),
                "ORDERBRIDGE_METRICS_PORT": str(poller_metrics),
            },
        ),
        ChildSpec(
            "fetcher",
            orderbridge_argv("apicbase-fetcher"),
            env=common
            | {
                "ORDERBRIDGE_APICBASE_API_URL": apicbase_api,
                "ORDERBRIDGE_APICBASE_CLIENT_ID": APIC_CLIENT,
                "ORDERBRIDGE_APICBASE_CLIENT_SECRET": APIC_SECRET,
                "ORDERBRIDGE_APICBASE_REFRESH_TOKEN": APIC_REFRESH,
                "ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS": setting(
                    "ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS", "15"
                ),
                "ORDERBRIDGE_METRICS_PORT": str(fetcher_metrics),
            },
        ),
        ChildSpec(
            "consumer",
            orderbridge_argv("consumer"),
            env=common
            | {
                "ORDERBRIDGE_CONSUMER_CONFIG": routes,
                "ORDERBRIDGE_ERP_INBOX": str(inbox.resolve()),
                "ORDERBRIDGE_METRICS_PORT": str(consumer_metrics),
            },
        ),
    ]
    urls = {
        "webhooks (ingress)": f"{ingress}/webhooks/tradecloud/orders, …/apicbase/orders",
        **{
            f"{name} metrics": f"http://{metrics_host}:{port}/metrics"
            for name, port in (
                ("ingress", ingress_metrics),
                ("poller", poller_metrics),
                ("fetcher", fetcher_metrics),
                ("consumer", consumer_metrics),
            )
            if port
        },
        "Tradecloud simulator": f"{tradecloud_api} (control: /_control)",
        "Apicbase simulator": f"{apicbase_api} (control: /_control)",
        "consumer routes": routes,
        "ERP inbox": str(inbox.resolve()),
    }
    ignored = {name: why for name, why in _SIMULATOR_WIRING.items() if env.get(name)}
    return Plan(children, urls, ignored=ignored)


def environment_plan(env: Mapping[str, str]) -> Plan:
    """The services the ``ORDERBRIDGE_*`` environment configures (``orderbridge run``)."""
    children = [ChildSpec("ingress", orderbridge_argv("ingress"))]
    skipped: dict[str, str] = {}
    if env.get("ORDERBRIDGE_TRADECLOUD_USERNAME") and env.get("ORDERBRIDGE_TRADECLOUD_ROLE"):
        children.append(ChildSpec("poller", orderbridge_argv("poller")))
    else:
        skipped["poller"] = "set ORDERBRIDGE_TRADECLOUD_USERNAME/_PASSWORD and _ROLE"
    if env.get("ORDERBRIDGE_APICBASE_CLIENT_ID"):
        children.append(ChildSpec("fetcher", orderbridge_argv("apicbase-fetcher")))
    else:
        skipped["apicbase-fetcher"] = "set ORDERBRIDGE_APICBASE_CLIENT_ID/_SECRET"
    if env.get("ORDERBRIDGE_CONSUMER_CONFIG"):
        children.append(ChildSpec("consumer", orderbridge_argv("consumer")))
    else:
        skipped["consumer"] = "set ORDERBRIDGE_CONSUMER_CONFIG"
    port = env.get("ORDERBRIDGE_INGRESS_PORT", "8080")
    return Plan(children, {"ingress": f"http://127.0.0.1:{port}"}, skipped)
