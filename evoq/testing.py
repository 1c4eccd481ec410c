"""Test support shared by the test suite, the benchmarks and the fault campaign.

A real ``redis-server`` child process on a free loopback port (:class:`LocalRedis`), real
``rq worker`` processes as evoq documents them (:class:`WorkerProcess`), spec files
(:func:`write_spec`) and polling helpers. Never used by evoq's runtime itself: the embedded
default is in-process fakeredis.

The server runs with AOF (``appendfsync everysec``) in a directory of the caller's, so that a
restart — clean or after SIGKILL — keeps the data, as a production Redis would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import redis

from workers.launch import worker_command

T = TypeVar("T")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, if any."""
    return shutil.which("redis-server")


class LocalRedis:
    """``redis-server`` on a free loopback port, AOF everysec, data kept in ``directory``.

    Args:
        directory: where the AOF (and the server's own log, ``redis-N.log``) go.
        password: a ``requirepass`` password, if any.
        binary: the server binary (default: ``redis-server`` on PATH).
        env: the server's environment (default: this process's).
        extra: more ``redis-server`` arguments (e.g. ``["--aclfile", path]``).
        own_session: start the server in its own session (so that a signal to this process
            group does not reach it).
    """

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        binary: str | None = None,
        env: Mapping[str, str] | None = None,
        extra: list[str] | None = None,
        own_session: bool = False,
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server not found on PATH (Debian: apt-get install redis-server)")
        self.binary = found
        self.directory = directory
        self.password = password
        self.env = dict(env) if env is not None else None
        self.extra = list(extra or [])
        self.own_session = own_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        for attempt in range(5):  # another process may grab the port between probe and bind
            self.port = free_port()
            try:
                self.start()
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (again) on the same port and directory; wait until it answers.

        Raises:
            RuntimeError: the server exited or did not answer in time.
        """
        self.starts += 1
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "everysec", "--auto-aof-rewrite-percentage", "0",
            "--save", "", "--daemonize", "no", "--loglevel", "warning", *self.extra,
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        with open(self.directory / f"redis-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=self.own_session
            )
        deadline = time.monotonic() + timeout
        probe = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} (port {self.port})")
            try:
                probe.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer in time") from None
                time.sleep(0.02)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client as evoq's CLI makes one (bytes responses)."""
        return redis.Redis.from_url(self.url, socket_connect_timeout=5, **kwargs)

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


class WorkerProcess:
    """One ``rq worker`` process started with evoq's command line (:func:`worker_command`).

    Args:
        url: the Redis URL (passed in the environment, as evoq does).
        name: the worker's name.
        queues: the queues it listens on.
        worker_class: the RQ worker class.
        env: the environment (the command's variables are added to it).
        cwd: its working directory.
        monitoring: ``--job-monitoring-interval``.
        burst: quit when the queues are empty.
        **popen: more ``subprocess.Popen`` arguments (stdout, stderr, start_new_session, ...).
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        queues: tuple[str, ...] = ("evoq",),
        worker_class: str = "rq.worker.Worker",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        monitoring: int = 1,
        burst: bool = False,
        **popen: Any,
    ) -> None:
        self.name = name
        cmd = worker_command(
            url, queues, worker_class=worker_class, monitoring=monitoring, name=name, burst=burst
        )
        popen.setdefault("stdout", subprocess.DEVNULL)
        popen.setdefault("stderr", subprocess.PIPE)
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            cmd.argv, cwd=cwd, env=cmd.full_env(env), **popen
        )

    def children(self) -> list[int]:
        """Pids of its direct children (the work horse of a forking worker)."""
        try:
            return [
                int(c)
                for c in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            ]
        except OSError:
            return []

    def horse(self, timeout: float = 10.0) -> int:
        """The pid of the work horse currently running a job."""
        return wait_for(lambda: next(iter(self.children()), 0), timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL, *, with_horse: bool = False) -> None:
        """Send ``sig`` to the worker (and first to its horse)."""
        if with_horse:
            for pid in self.children():
                os.kill(pid, sig)
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (bool, int, float, str, list, inline table)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def write_spec(
    path: Path, name: str, trial: str, space: str | Mapping[str, Any], *, seed: int = 3, **strategy: Any
) -> Path:
    """Write a spec file: ``space`` is TOML text for ``[space]`` or a mapping of parameters."""
    lines = [f"name = {toml_value(name)}", f"trial = {toml_value(trial)}", f"seed = {seed}", "[strategy]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in strategy.items() if v is not None]
    lines.append("[space]")
    if isinstance(space, str):
        lines.append(space)
    else:
        lines += [f"{k} = {toml_value(v)}" for k, v in space.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something true; return that.

    Raises:
        TimeoutError: not true within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--enable-unsafe-swiftshader",
)  # fmt: skip
"""Flags for headless Chromium here: root in a container, no GPU (WebGL in software, which
Plotly's large scatter plots need), no network (nothing may phone home)."""


def chromium_paths() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` from PATH (Debian's ``chromium`` and ``chromium-driver``)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def chromium(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium driven by Selenium, with the browser and driver given explicitly (so
    that Selenium never tries to download a driver). Quit it with ``.quit()``.

    Raises:
        FileNotFoundError: Chromium or ChromeDriver is not installed.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise FileNotFoundError(
            "chromium or chromedriver not found (Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in (*CHROMIUM_ARGS, f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(paths[1]), options=options)
