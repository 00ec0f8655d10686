"""Run ``orderbridge`` as an operator does: a child process, this worktree's code."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def cli_env(**settings: str) -> dict[str, str]:
    """The environment without the caller's ``ORDERBRIDGE_*`` settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    env.update(settings)
    return env


async def orderbridge(
    *args: str, env: Mapping[str, str], stdin: bytes = b"", timeout: float = 60
) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(stdin)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())
