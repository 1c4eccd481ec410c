"""The Redis Stream backend of the event log: one stream per experiment, never trimmed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import redis

from .codec import CorruptRecordError
from .keys import STREAM_FIELD, Keys

_BATCH = 10_000


def _id(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisLog:
    """An :class:`~evoq.log.EventLog` on a Redis Stream. Positions are stream ids (``"ms-seq"``).

    ``client`` must not decode responses (records are bytes).
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.stream = keys.stream

    def append(self, records: Sequence[bytes]) -> list[str]:
        """XADD the records in one MULTI/EXEC; return their stream ids."""
        if not records:
            return []
        if len(records) == 1:  # a single XADD is atomic by itself: no MULTI/EXEC round trip
            return [_id(self.client.xadd(self.stream, {STREAM_FIELD: records[0]}))]
        pipe = self.client.pipeline(transaction=True)
        for r in records:
            pipe.xadd(self.stream, {STREAM_FIELD: r})
        return [_id(x) for x in pipe.execute()]

    def read(self, after: str | None = None) -> Iterator[tuple[str, bytes]]:
        """Yield ``(id, record)`` after ``after``, in batches of XRANGE."""
        start = "-" if after is None else f"({after}"
        while True:
            entries: Any = self.client.xrange(self.stream, min=start, max="+", count=_BATCH)
            for raw_id, fields in entries:
                yield _id(raw_id), _record(fields, raw_id)
            if len(entries) < _BATCH:
                return
            start = f"({_id(entries[-1][0])}"

    def wait(self, after: str | None, timeout_ms: int) -> list[tuple[str, bytes]]:
        """Block up to ``timeout_ms`` for records after ``after`` (XREAD BLOCK); [] on timeout."""
        result: Any = self.client.xread({self.stream: after or "0-0"}, count=_BATCH, block=max(timeout_ms, 1))
        if not result:
            return []
        # RESP2 answers [[stream, entries]], RESP3 {stream: [entries]}
        entries = next(iter(result.values()))[0] if isinstance(result, dict) else result[0][1]
        return [(_id(i), _record(f, i)) for i, f in entries]

    def last_id(self) -> str | None:
        """The id of the last record, or None for an empty stream."""
        last: Any = self.client.xrevrange(self.stream, count=1)
        return _id(last[0][0]) if last else None


def _record(fields: Any, raw_id: Any) -> bytes:
    data = fields.get(STREAM_FIELD) if isinstance(fields, dict) else None
    if not isinstance(data, bytes):
        raise CorruptRecordError(
            f"stream entry has no {STREAM_FIELD.decode()!r} field (fields: {sorted(map(str, fields))})",
            offset=_id(raw_id),
        )
    return data
