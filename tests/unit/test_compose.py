"""docker-compose.yml is safe to go live with, and the demo is one command.

docker-compose (v1, Debian's package: it validates and interpolates without a Docker
engine) is installed by ``.ci/services.sh``; where it is missing, those checks skip
and say so. The rest reads the files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.consumers.topology import dead_letter_queue, retry_queue, route_exchange, shard_queue
from shared.broker.definitions import APP_PERMISSIONS
from shared.broker.topology import core_topology

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DEMO_ENV = REPO / "demo.env"
EXAMPLE_ENV = REPO / ".env.example"
SERVICES = ("ingress", "poller", "apicbase-fetcher", "consumer")
DEMO_ONLY = {"tradecloud-sim", "apicbase-sim", "demo-driver"}
REQUIRED = re.compile(r"\$\{([A-Z0-9_]+):\?")
needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose not installed (apt-get install docker-compose)",
)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def required_variables() -> set[str]:
    return set(REQUIRED.findall(COMPOSE.read_text()))


def run_compose(
    tmp_path: Path, env: dict[str, str] | None, *args: str
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config -q`` on a copy of the project with ``env`` as its .env."""
    project = tmp_path / "project"
    if not project.exists():
        shutil.copytree(REPO / "deploy", project / "deploy")
        shutil.copy(COMPOSE, project / "docker-compose.yml")
    dotenv = project / ".env"
    dotenv.unlink(missing_ok=True)
    if env is not None:
        dotenv.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return subprocess.run(
        ["docker-compose", "--project-directory", str(project), *args, "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},  # nothing of this shell leaks in
    )


# ---------------------------------------------------------------- profiles


def test_the_simulators_and_the_driver_run_only_in_the_demo_profile() -> None:
    services = compose()["services"]
    assert set(services) >= {"rabbitmq", "postgres", "prometheus", "grafana", *SERVICES}
    for name, service in services.items():
        demo = service.get("profiles") == ["demo"]
        assert demo == (name in DEMO_ONLY), name
    for name in set(services) - DEMO_ONLY:  # a live start must not need a demo service
        depends = services[name].get("depends_on", {})
        assert not (set(depends) & DEMO_ONLY), name
    for name in SERVICES:
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
        assert "healthcheck" in services[name], name
    assert env_file(DEMO_ENV)["COMPOSE_PROFILES"] == "demo"


def test_live_services_point_at_the_real_platforms_unless_told_otherwise() -> None:
    text = COMPOSE.read_text()
    assert "${ORDERBRIDGE_TRADECLOUD_API_URL:-https://api.tradecloud1.com/v2}" in text
    assert "${ORDERBRIDGE_APICBASE_API_URL:-https://api.apicbase.com}" in text
    demo = env_file(DEMO_ENV)
    assert demo["ORDERBRIDGE_TRADECLOUD_API_URL"] == "http://tradecloud-sim:8090/v2"
    assert demo["ORDERBRIDGE_APICBASE_API_URL"] == "http://apicbase-sim:8091"


# ---------------------------------------------------------------- credentials


def test_no_live_credential_has_a_fallback() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if name in DEMO_ONLY:
            continue
        environment = service.get("environment", {})
        for variable, value in environment.items():
            assert not re.search(r"PASSWORD$|SECRET$|TOKEN$|_URL$", variable) or (
                variable.endswith("_API_URL")
            ), f"{name}: {variable} belongs in a secret"
            assert "guest" not in str(value) and "demo" not in str(value), (name, variable)
    for name in ("orderbridge_amqp_url", "orderbridge_state_url"):
        for service in SERVICES:
            assert name in services[service]["secrets"], (service, name)
    assert "POSTGRES_PASSWORD" not in services["postgres"]["environment"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    assert (
        grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
        and grafana["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    )
    for secret in compose()["secrets"].values():
        assert secret["file"].startswith("${SECRETS_DIR:?"), secret


def test_every_secret_has_a_demo_value_and_the_demo_urls_agree_with_the_passwords() -> None:
    demo = REPO / env_file(DEMO_ENV)["SECRETS_DIR"]
    names = set(compose()["secrets"])
    assert {path.name for path in demo.iterdir()} == names
    value = {name: (demo / name).read_text().strip() for name in names}
    assert f":{value['rabbitmq_app_password']}@" in value["orderbridge_amqp_url"]
    assert f":{value['postgres_password']}@" in value["orderbridge_state_url"]
    assert value["orderbridge_amqp_url"].startswith("amqp://orderbridge:")


def test_the_example_env_documents_every_variable_and_secret() -> None:
    example = EXAMPLE_ENV.read_text()
    for variable in required_variables() | set(
        re.findall(r"\$\{([A-Z0-9_]+):-", COMPOSE.read_text())
    ):
        assert re.search(rf"^#? ?{variable}=", example, re.MULTILINE), variable
    for secret in compose()["secrets"]:
        assert secret in example, secret
    assert required_variables() <= set(env_file(DEMO_ENV))


def test_the_poll_start_has_no_default() -> None:
    assert "ORDERBRIDGE_POLL_START" in required_variables()
    assert (
        "ORDERBRIDGE_POLL_START" not in env_file(EXAMPLE_ENV)
        or not env_file(EXAMPLE_ENV)["ORDERBRIDGE_POLL_START"]
    )


# ---------------------------------------------------------------- RabbitMQ


def test_the_app_user_may_touch_only_orderbridge_names() -> None:
    rabbitmq = compose()["services"]["rabbitmq"]["environment"]
    # compose writes a literal $ as $$
    assert {
        "configure": rabbitmq["RABBITMQ_APP_CONFIGURE"],
        "write": rabbitmq["RABBITMQ_APP_WRITE"].replace("$$", "$"),
        "read": rabbitmq["RABBITMQ_APP_READ"],
    } == APP_PERMISSIONS
    topology = core_topology()
    names = [exchange.name for exchange in topology.exchanges]
    names += [queue.name for queue in topology.queues]
    names += [route_exchange("orders"), shard_queue("orders", 3), retry_queue("orders", 30)]
    names += [dead_letter_queue("orders"), "orderbridge.probe.0123abcd"]
    for name in names:
        for kind, pattern in APP_PERMISSIONS.items():
            assert re.match(pattern, name), (kind, name)
    assert re.match(APP_PERMISSIONS["write"], "amq.default")  # retries via the default exchange
    for foreign in ("amq.topic", "amq.default", "other.queue", "xorderbridge.events"):
        assert not re.match(APP_PERMISSIONS["configure"], foreign), foreign
        assert not re.match(APP_PERMISSIONS["read"], foreign), foreign
    assert not re.match(APP_PERMISSIONS["write"], "amq.topic")


def test_the_committed_definitions_carry_no_user() -> None:
    import json

    committed = json.loads((REPO / "deploy/rabbitmq/definitions.json").read_text())
    assert "users" not in committed and "permissions" not in committed
    conf = (REPO / "deploy/rabbitmq/rabbitmq.conf").read_text()
    assert not re.search(r"^(default_user|default_pass|load_definitions)", conf, re.MULTILINE)
    start = (REPO / "deploy/rabbitmq/start.sh").read_text()
    assert "/run/secrets/rabbitmq_admin_password" in start
    assert "/run/secrets/rabbitmq_app_password" in start
    assert "import_definitions /etc/rabbitmq/definitions.json" in start
    plugins = (REPO / "deploy/rabbitmq/enabled_plugins").read_text()
    for plugin in (
        "rabbitmq_management",
        "rabbitmq_prometheus",
        "rabbitmq_consistent_hash_exchange",
    ):
        assert plugin in plugins


# ---------------------------------------------------------------- the image


def test_the_erp_inbox_belongs_to_the_user_the_image_runs_as() -> None:
    """Without an engine: the Dockerfile's runtime stage creates the mount path for its user.

    A named volume mounted on an existing directory of the image starts as a copy of
    it, owner included; without the directory it would be root's.
    """
    dockerfile = (REPO / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.rindex("\nFROM ") :]
    [user] = re.findall(r"^USER (\S+)", runtime, re.MULTILINE)
    consumer = compose()["services"]["consumer"]
    inbox = consumer["environment"]["ORDERBRIDGE_ERP_INBOX"]
    assert f"erp-inbox:{inbox}" in consumer["volumes"]
    before_user = runtime[: runtime.index(f"USER {user}")]
    assert re.search(rf"mkdir -p {re.escape(inbox)}\b", before_user)
    assert re.search(rf"chown {user}:{user} {re.escape(inbox)}\b", before_user)
    assert re.search(rf"useradd\b.*\b{user}\b", before_user)


# ---------------------------------------------------------------- docker-compose


@needs_compose
def test_docker_compose_validates_the_demo(tmp_path: Path) -> None:
    demo = env_file(DEMO_ENV)
    for args in ([], ["--profile", "demo"]):
        result = run_compose(tmp_path, demo, *args)
        assert result.returncode == 0, result.stderr


@needs_compose
def test_docker_compose_validates_a_live_env_file(tmp_path: Path) -> None:
    live = {name: "x" for name in required_variables()}
    live["SECRETS_DIR"] = "./secrets"
    result = run_compose(tmp_path, live)
    assert result.returncode == 0, result.stderr


@needs_compose
def test_a_live_start_without_the_variables_fails_naming_them(tmp_path: Path) -> None:
    bare = run_compose(tmp_path, None)
    assert bare.returncode != 0
    assert any(name in bare.stderr for name in required_variables()), bare.stderr
    complete = {name: "x" for name in required_variables()}
    for name in sorted(required_variables()):  # each one alone is enough to stop it
        result = run_compose(tmp_path, {k: v for k, v in complete.items() if k != name})
        assert result.returncode != 0, name
        assert name in result.stderr and "see .env.example" in result.stderr, result.stderr
