"""A redis-server child process on a free loopback port: for tests, benchmarks and fault campaigns.

Never used by evoq's runtime itself (the embedded default is in-process fakeredis); this starts
Debian's ``redis-server`` with AOF (``appendfsync everysec``) in a directory of the caller's, so
that a restart — clean or after SIGKILL — keeps the data, as a production Redis would.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, if any."""
    return shutil.which("redis-server")


class LocalRedis:
    """``redis-server`` on a free loopback port, AOF everysec, data kept in ``directory``."""

    def __init__(self, directory: Path, *, password: str | None = None, binary: str | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server not found on PATH (Debian: apt-get install redis-server)")
        self.binary = found
        self.directory = directory
        self.password = password
        self.port = free_port()
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again) on the same port and directory; wait until it answers."""
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "everysec", "--auto-aof-rewrite-percentage", "0",
            "--save", "", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        """A client as evoq's CLI makes one (bytes responses)."""
        return redis.Redis.from_url(self.url, socket_connect_timeout=5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server with ``sig`` (SIGKILL: a crash) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM, down: float = 0.5) -> None:
        """Stop with ``sig``, stay down ``down`` seconds, start again with the data kept."""
        self.stop(sig)
        time.sleep(down)
        self.start()
