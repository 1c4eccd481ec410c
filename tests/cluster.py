"""Real redis-server and real `rq worker` processes for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from evoq.cli import worker_command
from evoq.codec import decode
from evoq.events import Event
from evoq.keys import Keys
from evoq.localredis import LocalRedis, redis_server_binary
from evoq.redislog import RedisLog

ROOT = Path(__file__).resolve().parent.parent


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

    def __init__(self, directory: Path, password: str | None = None) -> None:
        super().__init__(directory, password=password, binary=redis_binary())


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("EVOQ_ALLOW", "tests.trials:*")
    env.update(extra)
    return env


class Worker:
    """One `rq worker` process as evoq documents it."""

    def __init__(self, url: str, name: str, *, worker_class: str = "rq.worker.Worker", **env: str) -> None:
        self.name = name
        cmd = worker_command(url, ("evoq",), worker_class=worker_class, monitoring=1, name=name)
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=worker_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def horse(self, timeout: float = 10.0) -> int:
        """The pid of the work horse currently running a job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.01)
        raise TimeoutError(f"worker {self.name} has no work horse")

    def kill(self, sig: int = signal.SIGKILL, *, with_horse: bool = False) -> None:
        if with_horse:
            for pid in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
                os.kill(int(pid), sig)
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


def controller(spec: Path, url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """`evoq run SPEC --redis-url URL` as a subprocess."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evoq.cli",
            "run",
            str(spec),
            "--redis-url",
            url,
            "--no-progress",
            "--json",
            "--heartbeat-ttl",
            "3",
            *args,
        ],
        cwd=ROOT,
        env=worker_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_spec(path: Path, name: str, trial: str, space: str, **strategy: Any) -> Path:
    lines = [f'name = "{name}"', f'trial = "{trial}"', "seed = 3", "[strategy]"]
    for k, v in strategy.items():
        value = str(v).lower() if isinstance(v, bool) else (f'"{v}"' if isinstance(v, str) else repr(v))
        lines.append(f"{k} = {value}")
    lines += ["[space]", space]
    path.write_text("\n".join(lines) + "\n")
    return path


def stream_events(client: redis.Redis, name: str) -> list[tuple[str, Event]]:
    return [(pos, decode(data, offset=pos)) for pos, data in RedisLog(client, Keys(name)).read()]


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")
