"""The embedded default: everything in one process, on the same code path as a real deployment.

An in-process fakeredis server stands in for Redis; RQ ``SimpleWorker`` threads (with evoq's
serializer and job class) stand in for ``rq worker`` processes; the controller is the same
:class:`~evoq.controller.Controller`. Because fakeredis keeps nothing, every entry the controller
folds is also appended, in stream order, to a local :class:`~evoq.filelog.FileLog`; a later run loads
that file back into the stream, so it resumes where the last one stopped, and
``export``/``replay``/``plot`` work on it. Runs that were in flight when the process died have no
job in the new server: the controller declares them lost and runs them again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
from rq import Queue
from rq.timeouts import TimerDeathPenalty
from rq.worker import SimpleWorker

from .controller import JOB_CLASS, SERIALIZER
from .errors import EvoqError
from .filelog import FileLog, TornTailWarning
from .keys import DEFAULT_QUEUE, Keys
from .redislog import RedisLog
from .sources import embedded_log_path


class ThreadWorker(SimpleWorker):
    """An RQ SimpleWorker that can run in a thread (no signal handlers; timer-based timeouts)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


class FileMirror:
    """Appends the entries the controller folds to a file log, skipping those already there."""

    def __init__(self, log: FileLog, skip: int) -> None:
        self.log = log
        self.skip = skip

    def __call__(self, entries: Sequence[tuple[str, bytes]]) -> None:
        records = [data for _, data in entries]
        if self.skip:
            dropped = min(self.skip, len(records))
            records = records[dropped:]
            self.skip -= dropped
        if records:
            self.log.append(records)


class Embedded:
    """An in-process Redis with RQ worker threads."""

    def __init__(self, workers: int, *, queue: str = DEFAULT_QUEUE) -> None:
        self.server = fakeredis.FakeServer()
        self.queue_name = queue
        self.n_workers = workers
        self._threads: list[threading.Thread] = []
        self._workers: list[ThreadWorker] = []

    def client(self) -> Any:
        """A new client of the in-process server (bytes responses, as evoq expects)."""
        return fakeredis.FakeRedis(server=self.server)

    def load(self, keys: Keys, file: FileLog) -> int:
        """Copy ``file``'s records into the experiment's stream; return how many."""
        log = RedisLog(self.client(), keys)
        n = 0
        batch: list[bytes] = []
        for _, data in file.read():
            batch.append(data)
            if len(batch) >= 1000:
                n += len(log.append(batch))
                batch = []
        return n + len(log.append(batch))

    def start_workers(self) -> None:
        """Start the worker threads (daemons: they end with the process). RQ's log lines go to
        stderr (stdout is kept for ``--json``)."""
        rq_log = logging.getLogger("rq")
        if not rq_log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            rq_log.addHandler(handler)
        for i in range(self.n_workers):
            conn = self.client()
            q = Queue(self.queue_name, connection=conn, serializer=SERIALIZER, job_class=JOB_CLASS)
            w = ThreadWorker(
                [q], connection=conn, serializer=SERIALIZER, job_class=JOB_CLASS, name=f"evoq-embedded-{i}"
            )
            t = threading.Thread(
                target=w.work, kwargs={"logging_level": "WARNING", "with_scheduler": False}, daemon=True
            )
            t.start()
            self._workers.append(w)
            self._threads.append(t)

    def stop_workers(self) -> None:
        """Ask the worker threads to stop after their current job."""
        for w in self._workers:
            w._stop_requested = True


@contextmanager
def embedded(workers: int, *, queue: str = DEFAULT_QUEUE) -> Iterator[Embedded]:
    """An :class:`Embedded` runtime whose worker threads are asked to stop on exit."""
    env = Embedded(workers, queue=queue)
    try:
        yield env
    finally:
        env.stop_workers()


@dataclass
class EmbeddedRun:
    """An embedded experiment ready for its controller: a loaded stream, running worker threads
    and the mirror that keeps the log file in step with the stream."""

    env: Embedded
    path: Path
    mirror: FileMirror
    loaded: int

    def client(self) -> Any:
        """A client of the in-process Redis."""
        return self.env.client()


LOCK_POLL_S = 0.5
"""How often ``evoq run --wait`` looks whether the experiment's lock was released."""


class EmbeddedBusyError(EvoqError):
    """Another process runs this embedded experiment (it holds the experiment's lock)."""


def user_code_paths(spec_dir: str | Path) -> list[str]:
    """Put the spec's folder and the current directory first on ``sys.path`` (the embedded
    workers are threads of this process: they import the trial from there); return the folders
    added."""
    added = []
    for folder in (Path.cwd(), Path(spec_dir).resolve()):
        text = str(folder)
        if text not in sys.path:
            sys.path.insert(0, text)
            added.append(text)
    return added


@contextmanager
def experiment_lock(path: Path, name: str, *, wait: bool, notify: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock on an embedded experiment (``flock`` on ``path``), as the lease does
    in Redis mode: a second run of it refuses to start (or waits, with ``wait``).

    Raises:
        EmbeddedBusyError: another process holds the lock and ``wait`` is false.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                if not wait:
                    raise EmbeddedBusyError(
                        f"experiment {name!r} is already being run by another evoq process on this machine "
                        f"(pid {holder}, lock {path}); stop it first, or pass --wait to run when it stops"
                    ) from None
                if not announced:
                    notify(f"waiting for evoq process {holder} to finish experiment {name!r}")
                    announced = True
                time.sleep(LOCK_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_path(log: Path) -> Path:
    """The lock file beside an embedded experiment's log."""
    return log.with_suffix(".lock")


def is_locked(log: Path) -> bool:
    """Whether some process holds the lock of the embedded experiment whose log is ``log``."""
    path = lock_path(log)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def embedded_run(
    name: str,
    *,
    workers: int,
    queue: str,
    log_dir: str | Path,
    allow: Sequence[str],
    notify: Callable[[str], None],
    wait: bool = False,
    allow_commands: Sequence[str] = (),
) -> Iterator[EmbeddedRun]:
    """Lock experiment ``name``, load its log file into an in-process Redis and start
    ``workers`` worker threads allowed to run ``allow``; ``notify`` receives one-line messages
    for the user.

    Raises:
        EmbeddedBusyError: another process runs this experiment (see :func:`experiment_lock`).
        CodecError: the log file is damaged (the message names the offset).
    """
    path = embedded_log_path(log_dir, name)
    with experiment_lock(lock_path(path), name, wait=wait, notify=notify):
        file = FileLog(path)
        os.environ["EVOQ_ALLOW"] = ",".join(allow)  # worker threads read their allowlist from here
        os.environ["EVOQ_ALLOW_COMMANDS"] = "\n".join(allow_commands)
        os.environ["EVOQ_QUEUES"] = queue
        with embedded(workers, queue=queue) as env:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", TornTailWarning)
                loaded = env.load(Keys(name), file)
            for w in caught:
                notify(f"warning: {w.message}")
            if loaded:
                notify(f"resuming from {loaded} logged events")
            env.start_workers()
            yield EmbeddedRun(env, path, FileMirror(file, skip=loaded), loaded)
