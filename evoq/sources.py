"""Where an experiment's log is read from: a Redis (by name), an embedded log (by name), a file.

Every inspection command (``status``, ``top``, ``export``, ``plot``, ``replay``, ``audit``,
``lineage``, ...) names its log the same way, ``NAME|FILE``, and reads it through
:func:`open_source`. Errors are :class:`SourceError`\\ s with one-line messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from .codec import CodecError, decode
from .errors import EvoqError
from .events import Event
from .filelog import FileLog, FrameError, TornTailWarning
from .keys import EXPERIMENTS, Keys, check_name
from .redislog import RedisLog
from .reducer import InvalidLogError, State, StateBuilder

EMBEDDED_DIR = ".evoq"


class SourceError(EvoqError):
    """A log source cannot be found, reached or read; the message says which and why."""


def connect(url: str) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, with password), checked with PING."""
    from workers.launch import mask_url

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        client.ping()
    except redis.AuthenticationError as exc:
        raise SourceError(f"Redis at {mask_url(url)} refused the credentials: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise SourceError(f"cannot reach Redis at {mask_url(url)}: {exc}") from None
    except redis.ResponseError as exc:
        raise SourceError(f"Redis at {mask_url(url)} answered with an error: {exc}") from None
    except ValueError as exc:
        raise SourceError(f"bad Redis URL {mask_url(url)}: {exc}") from None
    return client


def embedded_log_path(directory: str | Path, name: str) -> Path:
    """Where the embedded runtime keeps experiment ``name``'s log."""
    return Path(directory) / f"{name}.evoqlog"


@dataclass
class Source:
    """One experiment's log, wherever it lives.

    Attributes:
        label: how messages name it (``experiment 'x' in Redis``, ``log file 'a.evoqlog'``).
        log: the log (a :class:`RedisLog` or a :class:`FileLog`).
        client: the Redis client, for a Redis source.
        warnings: messages about the log met while reading it (e.g. a torn last record).
    """

    label: str
    log: RedisLog | FileLog
    client: redis.Redis | None = None
    name: str | None = None
    warnings: list[str] = field(default_factory=list)

    def entries(self) -> Iterator[tuple[Any, bytes]]:
        """``(position, record bytes)`` of the whole log, noting a torn tail in :attr:`warnings`."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TornTailWarning)
            try:
                yield from self.log.read()
            except OSError as exc:
                raise SourceError(f"cannot read {self.label}: {exc.strerror or exc}") from None
        self.warnings.extend(str(w.message) for w in caught)

    def size(self) -> dict[str, int | None]:
        """``{"records", "bytes"}`` of the log: the stream's length and memory (XLEN, MEMORY
        USAGE), or the file's size. ``bytes`` is None where Redis will not say."""
        if isinstance(self.log, FileLog):
            return {"records": None, "bytes": self.log.path.stat().st_size}
        assert self.client is not None
        records = int(self.client.xlen(self.log.stream))
        try:
            usage: Any = self.client.memory_usage(self.log.stream, samples=0)
        except redis.ResponseError:
            usage = None
        return {"records": records, "bytes": int(usage) if usage is not None else None}

    def load(self) -> Loaded:
        """Every event of the log and the state they fold to. A record the fold rejects
        (garbled, foreign, of a newer schema, ...) is left out of the events and counted in the
        state with its position and reason, exactly as the controller skips it.

        Raises:
            SourceError: the log cannot be read, or a log file is damaged (its frames).
        """
        b = StateBuilder()
        events: list[Event] = []
        try:
            for pos, data in self.entries():
                try:
                    event = decode(data, offset=pos)
                    b.add(event)
                except CodecError as exc:
                    b.events += 1
                    b.reject(pos, exc.reason)
                    continue
                except InvalidLogError as exc:
                    b.reject(pos, str(exc))
                    continue
                events.append(event)
        except FrameError as exc:
            raise SourceError(f"{self.label}: {exc}") from None
        if b.events == 0:
            raise SourceError(f"{self.label} is empty")
        return Loaded(events, b.freeze(), self)


@dataclass
class Loaded:
    """A log read in full: its events (rejected records left out), their state, the source."""

    events: list[Event]
    state: State
    source: Source


def file_source(path: Path) -> Source:
    """The log file at ``path``."""
    if not path.exists():
        raise SourceError(f"log file {str(path)!r} not found")
    if not path.is_file():
        raise SourceError(f"{str(path)!r} is not a log file")
    return Source(f"log file {str(path)!r}", FileLog(path))


def redis_source(client: redis.Redis, name: str) -> Source:
    """Experiment ``name`` in the Redis of ``client``; it must exist."""
    try:
        keys = Keys(check_name(name))
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    if not client.exists(keys.stream):
        known = sorted(n.decode(errors="replace") for n in client.smembers(EXPERIMENTS))  # type: ignore[union-attr]
        raise SourceError(f"no experiment {name!r} in this Redis (known: {', '.join(known) or 'none'})")
    return Source(f"experiment {name!r} in Redis", RedisLog(client, keys), client, name)


def open_source(source: str, redis_url: str | None, log_dir: Path) -> Source:
    """``source`` as a log: a file path, else an experiment name in Redis (with ``redis_url``),
    else an embedded log in ``log_dir``."""
    path = Path(source)
    if path.is_file():
        return file_source(path)
    if path.is_dir():
        raise SourceError(f"{source!r} is a directory, not a log file or an experiment name")
    if redis_url:
        return redis_source(connect(redis_url), source)
    try:
        check_name(source)
    except ValueError:
        raise SourceError(f"{source!r} is neither a log file nor an experiment name") from None
    local = embedded_log_path(log_dir, source)
    if local.is_file():
        src = file_source(local)
        src.label, src.name = f"embedded experiment {source!r} ({local})", source
        return src
    raise SourceError(
        f"no log file {source!r} and no embedded log {str(local)!r}; for Redis pass --redis-url or set REDIS_URL"
    )
