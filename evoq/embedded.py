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

import os
import threading
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
        """Start the worker threads (daemons: they end with the process)."""
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


@contextmanager
def embedded_run(
    name: str,
    *,
    workers: int,
    queue: str,
    log_dir: str | Path,
    allow: Sequence[str],
    notify: Callable[[str], None],
) -> Iterator[EmbeddedRun]:
    """Load experiment ``name``'s log file into an in-process Redis and start ``workers`` worker
    threads allowed to run ``allow``; ``notify`` receives one-line messages for the user.

    Raises:
        CodecError: the log file is damaged (the message names the offset).
    """
    path = embedded_log_path(log_dir, name)
    file = FileLog(path)
    os.environ["EVOQ_ALLOW"] = ",".join(allow)  # worker threads read their allowlist from here
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
