"""The Redis Stream backend of the event log: one stream per experiment, never trimmed.

:meth:`RedisLog.append` is the only place in evoq that XADDs to an event stream — the
controller (inside its commit transaction, with ``pipeline=``), the workers' trial runner and the
embedded runtime all go through it — and it refuses records over the size limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack
import redis

from .codec import MAX_RECORD_BYTES, UNREADABLE_TAG, CorruptRecordError
from .keys import STREAM_FIELD, Keys

_BATCH = 10_000


def stream_id(raw: Any) -> str:
    """A stream id as text (redis-py answers bytes or str)."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisLog:
    """An :class:`~evoq.log.EventLog` on a Redis Stream. Positions are stream ids (``"ms-seq"``).

    ``client`` must not decode responses (records are bytes).
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.stream = keys.stream

    def append(self, records: Sequence[bytes], *, pipeline: Any = None) -> list[str]:
        """XADD the records; return their stream ids.

        Without ``pipeline``: one XADD (atomic by itself), or one MULTI/EXEC for several.
        With ``pipeline``: the XADDs are queued on it and ``[]`` is returned; their ids are in the
        pipeline's ``execute()`` answer.

        Raises:
            CorruptRecordError: a record is empty or over :data:`~evoq.codec.MAX_RECORD_BYTES`.
        """
        for r in records:
            if not r or len(r) > MAX_RECORD_BYTES:
                raise CorruptRecordError(
                    f"refusing to append a record of {len(r)} bytes (1 to {MAX_RECORD_BYTES})"
                )
        if pipeline is not None:
            for r in records:
                pipeline.xadd(self.stream, {STREAM_FIELD: r})
            return []
        if not records:
            return []
        if len(records) == 1:
            return [stream_id(self.client.xadd(self.stream, {STREAM_FIELD: records[0]}))]
        pipe = self.client.pipeline(transaction=True)
        for r in records:
            pipe.xadd(self.stream, {STREAM_FIELD: r})
        return [stream_id(x) for x in pipe.execute()]

    def read_batches(self, after: str | None = None) -> Iterator[list[tuple[str, bytes]]]:
        """Yield lists of ``(id, record)`` after ``after``, one XRANGE of up to 10,000 each."""
        start = "-" if after is None else f"({after}"
        while True:
            entries: Any = self.client.xrange(self.stream, min=start, max="+", count=_BATCH)
            if entries:
                yield [(stream_id(raw_id), _record(fields, raw_id)) for raw_id, fields in entries]
            if len(entries) < _BATCH:
                return
            start = f"({stream_id(entries[-1][0])}"

    def read(self, after: str | None = None) -> Iterator[tuple[str, bytes]]:
        """Yield ``(id, record)`` after ``after``."""
        for batch in self.read_batches(after):
            yield from batch

    def wait(self, after: str | None, timeout_ms: int) -> list[tuple[str, bytes]]:
        """Block up to ``timeout_ms`` for records after ``after`` (XREAD BLOCK); [] on timeout."""
        result: Any = self.client.xread({self.stream: after or "0-0"}, count=_BATCH, block=max(timeout_ms, 1))
        if not result:
            return []
        # RESP2 answers [[stream, entries]], RESP3 {stream: [entries]}
        entries = next(iter(result.values()))[0] if isinstance(result, dict) else result[0][1]
        return [(stream_id(i), _record(f, i)) for i, f in entries]

    def last_id(self) -> str | None:
        """The id of the last record, or None for an empty stream."""
        last: Any = self.client.xrevrange(self.stream, count=1)
        return stream_id(last[0][0]) if last else None


def unreadable(entry_id: str, reason: str, data: bytes = b"") -> bytes:
    """The stand-in record for a stream entry that cannot be carried as it is (see
    :data:`~evoq.codec.UNREADABLE_TAG`): the fold rejects it with ``reason``."""
    digest = hashlib.blake2b(data, digest_size=16).hexdigest() if data else ""
    packed: bytes = msgpack.packb([UNREADABLE_TAG, 1, entry_id, reason[:500], len(data), digest])
    return packed


def carriable(entry_id: str, data: bytes) -> bytes:
    """``data`` if a file log can hold it, else its :func:`unreadable` stand-in."""
    if 0 < len(data) <= MAX_RECORD_BYTES:
        return data
    return unreadable(
        entry_id, f"record of {len(data)} bytes is over the {MAX_RECORD_BYTES}-byte limit", data
    )


def _record(fields: Any, raw_id: Any) -> bytes:
    data = fields.get(STREAM_FIELD) if isinstance(fields, dict) else None
    if isinstance(data, bytes):
        return data
    names = sorted(repr(k)[:30] for k in fields)[:5] if isinstance(fields, dict) else []
    return unreadable(
        stream_id(raw_id), f"stream entry has no {STREAM_FIELD.decode()!r} field (fields: {names})"
    )
