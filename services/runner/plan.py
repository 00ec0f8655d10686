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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.runner.supervisor import ChildSpec, orderbridge_argv

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


# Shared by the simulators and the services in the demo; not secrets worth the name.
TC_USER, TC_PASSWORD = "integration@buyer.example", "demo-api-password"
TC_HOOK_USER, TC_HOOK_PASSWORD = "tradecloud", "demo-webhook-password"
APIC_CLIENT, APIC_SECRET, APIC_REFRESH = "orderbridge", "demo-apicbase-secret", "demo-refresh"


def demo_plan(*, amqp_url: str, workdir: Path, inbox: Path, ports: DemoPorts = DemoPorts()) -> Plan:
    """Simulators, ingress, poller, fetcher and consumer, wired to each other on loopback."""
    ingress = f"http://127.0.0.1:{ports.ingress}"
    tradecloud_api = f"http://127.0.0.1:{ports.tradecloud}/v2"
    apicbase_api = f"http://127.0.0.1:{ports.apicbase}"
    common = {
        "ORDERBRIDGE_AMQP_URL": amqp_url,
        "ORDERBRIDGE_STATE_URL": f"sqlite:///{(workdir / 'state.db').resolve()}",
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
            orderbridge_argv("ingress", "--port", str(ports.ingress)),
            env=common
            | {
                "ORDERBRIDGE_METRICS_PORT": str(ports.ingress_metrics),
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
                "ORDERBRIDGE_POLL_INTERVAL_SECONDS": "15",
                "ORDERBRIDGE_METRICS_PORT": str(ports.poller_metrics),
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
                "ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS": "15",
                "ORDERBRIDGE_METRICS_PORT": str(ports.fetcher_metrics),
            },
        ),
        ChildSpec(
            "consumer",
            orderbridge_argv("consumer"),
            env=common
            | {
                "ORDERBRIDGE_CONSUMER_CONFIG": str((workdir / "demo-routes.toml").resolve()),
                "ORDERBRIDGE_ERP_INBOX": str(inbox.resolve()),
                "ORDERBRIDGE_METRICS_PORT": str(ports.consumer_metrics),
            },
        ),
    ]
    urls = {
        "webhooks (ingress)": f"{ingress}/webhooks/tradecloud/orders, …/apicbase/orders",
        "ingress metrics": f"http://127.0.0.1:{ports.ingress_metrics}/metrics",
        "poller metrics": f"http://127.0.0.1:{ports.poller_metrics}/metrics",
        "fetcher metrics": f"http://127.0.0.1:{ports.fetcher_metrics}/metrics",
        "consumer metrics": f"http://127.0.0.1:{ports.consumer_metrics}/metrics",
        "Tradecloud simulator": f"{tradecloud_api} (control: /_control)",
        "Apicbase simulator": f"{apicbase_api} (control: /_control)",
        "ERP inbox": str(inbox.resolve()),
    }
    return Plan(children, urls)


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
