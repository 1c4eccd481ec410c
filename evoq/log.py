"""Event logs: the two-method interface, the in-memory backend and the pure helpers.

Every backend implements :class:`EventLog` — ``append(records)`` and ``read(after)`` — over
encoded records (bytes); :func:`read_events` decodes them and :func:`replay_log` folds them.
Positions are backend-specific and opaque to callers: a record index (:class:`MemoryLog`), a
byte offset (:class:`evoq.filelog.FileLog`), a stream id (:class:`evoq.redislog.RedisLog`).
``read(after=None)`` starts at the beginning; ``read(after=p)`` yields the records after the one
at ``p``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import msgpack

from .codec import MAX_RECORD_BYTES, MSGPACK_UNPACK, Undecodable, decode, encode
from .events import Event
from .reducer import StateBuilder


class EventLog(Protocol):
    """An append-only log of encoded event records."""

    def append(self, records: Sequence[bytes]) -> list[Any]:
        """Append records atomically, in order; return their positions."""
        ...

    def read(self, after: Any = None) -> Iterator[tuple[Any, bytes]]:
        """Yield ``(position, record)`` for every record after ``after`` (None: from the start)."""
        ...


def append_events(log: EventLog, events: Sequence[Event]) -> list[Any]:
    """Encode and append events; return their positions."""
    return log.append([encode(e) for e in events])


def read_events(log: EventLog, after: Any = None) -> Iterator[tuple[Any, Event]]:
    """Decode the records after ``after``; a bad record raises a CodecError naming its position."""
    for pos, data in log.read(after):
        yield pos, decode(data, offset=pos)


def read_records(log: EventLog, after: Any = None) -> Iterator[tuple[Any, Any]]:
    """msgpack-unpack the records after ``after`` into raw tuples (not yet validated); feed the
    result to :meth:`evoq.reducer.StateBuilder.add_records`, which validates each record."""
    return unpack_records(log.read(after))


def unpack_records(entries: Iterable[tuple[Any, bytes]]) -> Iterator[tuple[Any, Any]]:
    """msgpack-unpack ``(position, bytes)`` entries into ``(position, raw tuple)``.

    A record that cannot be unpacked (or is over the size limit) comes out as an
    :class:`~evoq.codec.Undecodable`, which the fold rejects with its reason.
    """
    unpackb, limit = msgpack.unpackb, MAX_RECORD_BYTES
    for pos, data in entries:
        if len(data) > limit:
            yield pos, Undecodable(f"record of {len(data)} bytes is over the {limit}-byte limit")
            continue
        try:
            yield pos, unpackb(data, **MSGPACK_UNPACK)
        except Exception as exc:  # msgpack raises ValueError, TypeError and its own exceptions
            yield pos, Undecodable(f"not a msgpack record ({type(exc).__name__}: {exc})")


def replay_log(log: EventLog, after: Any = None, builder: StateBuilder | None = None) -> StateBuilder:
    """Fold every record after ``after`` into ``builder`` (a new one by default) and return it."""
    b = builder if builder is not None else StateBuilder()
    b.add_records(read_records(log, after))
    return b


class MemoryLog:
    """An in-process log (tests, simulations). Positions are record indices from 0."""

    def __init__(self) -> None:
        self._records: list[bytes] = []
        self._lock = threading.Lock()

    def append(self, records: Sequence[bytes]) -> list[int]:
        """Append records; return their indices."""
        with self._lock:
            start = len(self._records)
            self._records.extend(bytes(r) for r in records)
            return list(range(start, len(self._records)))

    def read(self, after: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(index, record)`` after index ``after``."""
        i = 0 if after is None else after + 1
        while True:
            with self._lock:
                if i >= len(self._records):
                    return
                data = self._records[i]
            yield i, data
            i += 1

    def __len__(self) -> int:
        return len(self._records)
