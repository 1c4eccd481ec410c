"""Command lines of evoq's ``rq worker`` processes, and local worker processes for ``evoq run``.

The Redis URL never goes on a command line (where ``ps`` shows it to every user of the machine,
password included): it is passed in the environment as ``RQ_REDIS_URL``, which ``rq worker``
reads in place of ``--url``. The worker's name is put into that URL too (``client_name``): rq
names only its first connection, and the connections redis-py opens again after a Redis restart
or a network blip would be anonymous, making the worker invisible to the controller's count of
live workers.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger("evoq.workers")

SERIALIZER = "workers.serializer.MsgpackSerializer"
JOB_CLASS = "workers.job.EvoqJob"
URL_VAR = "RQ_REDIS_URL"
WORKER_CLASSES = {
    "worker": "rq.worker.Worker",
    "heroku": "rq.worker.HerokuWorker",
    "simple": "rq.worker.SimpleWorker",
}
"""``evoq worker --worker-class`` names and the RQ classes they stand for."""


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def named_url(url: str, name: str) -> str:
    """``url`` with ``client_name=name`` in its query."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["client_name"] = name
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(frozen=True)
class WorkerCommand:
    """An ``rq worker`` process as evoq runs it: argv (no secrets) plus environment."""

    argv: list[str]
    env: dict[str, str]
    name: str

    def full_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with the command's variables."""
        return {**(os.environ if base is None else base), **self.env}

    def shell(self) -> str:
        """The command as a shell line, with the Redis password masked."""
        env = " ".join(
            f"{k}={shlex.quote(mask_url(v) if k == URL_VAR else v)}" for k, v in sorted(self.env.items())
        )
        return f"{env} {shlex.join(['rq', *self.argv[3:]])}"


def clear_stale_registration(client: Any, name: str) -> str | None:
    """Free a worker name left registered by a worker that is gone (``kill -9``, the OOM
    killer, a power cut): RQ refuses to start a worker under a name whose key has not expired
    yet (up to its TTL, minutes), which a supervisor restarting a fixed-name worker
    (``--name "$(hostname)-gpu0"``) would hit again and again. Returns what was done, or None.

    The proof that the holder is gone is Redis's own: evoq's workers name their connections
    after the worker, and no connection of that name is open (``CLIENT LIST``; a dead process's
    connections close with it). Without ``CLIENT LIST`` (a worker ACL user may not have it),
    the name is cleared only when its holder ran on this host, in this PID namespace's view, and
    that process is gone; a holder of the same PID as this process is not taken for gone
    (containers restart as PID 1, and another container may run as PID 1 too).
    """
    from rq.worker import Worker

    key = f"rq:worker:{name}"
    try:
        host, pid, death = client.hmget(key, "hostname", "pid", "death")
    except Exception:  # not a hash: RQ will say what is wrong with it
        return None
    if host is None or death is not None:
        return None
    try:
        number = int(pid)
    except (TypeError, ValueError):
        number = -1
    try:
        open_names = {str(c.get("name")) for c in client.client_list()}
    except Exception:  # no CLIENT LIST for this user: fall back on the process table
        open_names = None
    if open_names is not None:
        if name in open_names:
            return None  # a live worker holds the name
    elif host.decode(errors="replace") != socket.gethostname() or number <= 0 or number == os.getpid():
        return None
    else:
        try:
            os.kill(number, 0)
            return None  # alive: a real second worker under this name
        except ProcessLookupError:
            pass
        except PermissionError:
            return None  # alive, another user's
    try:
        found = Worker.find_by_key(key, connection=client)
        if found is None:
            return None
        found.register_death()  # type: ignore[no-untyped-call]
    except Exception:  # a hash RQ cannot read: RQ will refuse the name as before
        return None
    return f"worker name {name!r} was still registered by process {number}, which is gone: cleared it"


def worker_command(
    url: str,
    queues: tuple[str, ...],
    *,
    worker_class: str,
    monitoring: int,
    name: str | None,
    burst: bool = False,
    allow: tuple[str, ...] = (),
    allow_commands: tuple[str, ...] = (),
) -> WorkerCommand:
    """The ``rq worker`` command evoq's workers run (see the module docstring)."""
    name = name or uuid.uuid4().hex[:16]
    argv = [
        sys.executable, "-m", "rq.cli", "worker",
        "--serializer", SERIALIZER,
        "--job-class", JOB_CLASS,
        "--worker-class", worker_class,
        "--job-monitoring-interval", str(monitoring),
        "--name", name,
    ]  # fmt: skip
    if burst:
        argv.append("--burst")
    env = {URL_VAR: named_url(url, name), "EVOQ_QUEUES": ",".join(queues)}
    if allow:
        env["EVOQ_ALLOW"] = ",".join(allow)
    if allow_commands:
        env["EVOQ_ALLOW_COMMANDS"] = "\n".join(allow_commands)
    return WorkerCommand([*argv, *queues], env, name)


class LocalWorkers:
    """``rq worker`` processes started by ``evoq run --workers N`` on this machine.

    They log to this process's stderr (stdout stays free for ``--json``). :meth:`stop` asks
    for a warm shutdown (a running trial finishes first) and kills what outlives ``grace``.
    """

    def __init__(
        self, url: str, n: int, queue: str, allow: tuple[str, ...], allow_commands: tuple[str, ...] = ()
    ) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        for _ in range(n):
            cmd = worker_command(
                url, (queue,), worker_class=WORKER_CLASSES["worker"], monitoring=5, name=None, allow=allow,
                allow_commands=allow_commands,
            )  # fmt: skip
            self.procs.append(subprocess.Popen(cmd.argv, env=cmd.full_env(), stdout=sys.stderr))

    def stop(self, grace: float = 60.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after ``grace`` seconds: a killed worker's trial
        is declared lost and runs again on the next ``evoq run``."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("worker %d outlived its warm shutdown; killing it", p.pid)
                p.kill()
                p.wait()
