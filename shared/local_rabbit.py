"""A private RabbitMQ node on its own ports and data directory.

For machines without Docker: ``orderbridge run --demo`` starts one when nothing
answers at the broker URL, and tests that must *restart* a broker use one
instead of the shared node on 5672. Uses the locally installed
``rabbitmq-server`` (Debian's package); the node runs as the ``rabbitmq`` user
when started as root, so its directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import ConfigurationError

PLUGINS = ("rabbitmq_consistent_hash_exchange",)


def installed() -> bool:
    return shutil.which("rabbitmq-server") is not None and shutil.which("rabbitmqctl") is not None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class LocalRabbit:
    """One node: ``start()``, ``stop()``, ``restart()``; data survives a restart."""

    directory: Path
    port: int = 5699
    name: str = "orderbridge"
    plugins: tuple[str, ...] = PLUGINS
    """Plugins enabled at start; ``()`` gives a stock broker (tests of the plain topology)."""
    _env: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    @property
    def node(self) -> str:
        return f"{self.name}-{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _prepare(self) -> dict[str, str]:
        if not installed():
            raise ConfigurationError(
                "rabbitmq-server is not installed: apt-get install rabbitmq-server "
                "(or point ORDERBRIDGE_AMQP_URL at a running broker)"
            )
        d = self.directory.resolve()
        for sub in ("mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):
                user = pwd.getpwnam("rabbitmq")
                for path in (d, *d.rglob("*")):
                    os.chown(path, user.pw_uid, user.pw_gid)
                for parent in d.parents:
                    if not parent.stat().st_mode & 0o001:
                        raise ConfigurationError(
                            f"{parent} is closed to other users, so the rabbitmq user cannot "
                            f"reach {d}; choose a directory under an open path such as /tmp"
                        )
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 20000),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "node.pid"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins-expand"),
        }

    def start(self, *, wait_seconds: float = 60.0) -> None:
        """Start detached and wait until the AMQP port answers."""
        if port_open(self.port):
            raise ConfigurationError(f"port {self.port} is already in use")
        self._env = self._prepare()
        subprocess.run(
            ["rabbitmq-server", "-detached"], env=self._env, check=True, capture_output=True
        )
        deadline = time.monotonic() + wait_seconds
        while not port_open(self.port):
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"private RabbitMQ did not start within {wait_seconds:g}s; "
                    f"see {self.directory / 'log'}"
                )
            time.sleep(0.2)
        subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, "await_startup"],
            env=self._env,
            check=False,
            capture_output=True,
            timeout=wait_seconds,
        )

    def stop(self, *, wait_seconds: float = 30.0) -> None:
        """Stop the node (its data stays for the next start)."""
        env = self._env or self._prepare()
        subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, "stop"],
            env=env,
            check=False,
            capture_output=True,
            timeout=wait_seconds,
        )
        deadline = time.monotonic() + wait_seconds
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node; returns its stdout."""
        env = self._env or self._prepare()
        result = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout
