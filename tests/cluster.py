"""Support for the integration tests: real redis-server, real `rq worker`, `evoq` subprocesses.

Built on :mod:`evoq.testing` (shared with the benchmarks and the fault campaign); this adds what
only pytest needs: skipping (or, in CI, failing) when redis-server is missing, and the test
environment in which workers can import ``tests.trials``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from evoq.codec import decode
from evoq.events import Event
from evoq.keys import Keys
from evoq.redislog import RedisLog
from evoq.testing import (
    LocalRedis,
    WorkerProcess,
    chromium,
    chromium_paths,
    redis_server_binary,
    wait_for,
    write_spec,
)

ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "ROOT",
    "RedisServer",
    "Worker",
    "browser",
    "controller",
    "evoq",
    "one_line_error",
    "redis_binary",
    "stream_events",
    "wait_for",
    "worker_env",
    "write_spec",
]


def redis_binary() -> str:
    path = redis_server_binary()
    if path is None:
        message = "redis-server not found on PATH (scripts/test installs Debian's redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer(LocalRedis):
    """A real redis-server for a test: fails the test in CI (skips elsewhere) when absent."""

    def __init__(self, directory: Path, password: str | None = None, **kwargs: Any) -> None:
        super().__init__(directory, password=password, binary=redis_binary(), **kwargs)


def browser(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium (Selenium): fails the test in CI (skips elsewhere) when absent."""
    if chromium_paths() is None:
        message = "chromium and chromedriver not found (scripts/test installs Debian's chromium and chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chromium(width, height)


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("EVOQ_ALLOW", "tests.trials:*")
    env.update(extra)
    return env


class Worker(WorkerProcess):
    """One `rq worker` process as evoq documents it, able to import ``tests.trials``."""

    def __init__(
        self, url: str, name: str, *, worker_class: str = "rq.worker.Worker", burst: bool = False, **env: str
    ) -> None:
        super().__init__(url, name, worker_class=worker_class, env=worker_env(**env), cwd=ROOT, burst=burst)


def evoq(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``evoq ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "evoq.cli", *args],
        cwd=cwd, env=worker_env(**env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """``proc`` exited 2 with one ``Error:`` line on stderr containing ``words``, no traceback."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def controller(spec: Path, url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """`evoq run SPEC --redis-url URL` as a subprocess."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "evoq.cli", "run", str(spec), "--redis-url", url,
            "--no-progress", "--json", "--heartbeat-ttl", "3", *args,
        ],
        cwd=ROOT, env=worker_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def stream_events(client: redis.Redis, name: str) -> list[tuple[str, Event]]:
    return [(pos, decode(data, offset=pos)) for pos, data in RedisLog(client, Keys(name)).read()]
