"""Event logs: append records, read records after a position.

Every backend implements the two-method :class:`EventLog` interface over encoded records
(bytes); :func:`read_events` decodes them. Positions are backend-specific and opaque to callers:
a record index (memory), a byte offset (file), a stream id (Redis). ``read(after=None)`` starts at
the beginning; ``read(after=p)`` yields the records after the one at ``p``.

The file format: an 8-byte magic ``EVOQLOG1``, then one frame per record: a big-endian u32
payload length, a big-endian u32 CRC-32 of the payload, and the msgpack payload. A frame cut
short at the end of the file (a torn write) is reported with a :class:`TornTailWarning` and
ignored, and the next append cuts it off; a bad frame with anything after it is corruption and
raises :class:`~evoq.codec.CorruptRecordError` naming its offset.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgpack

from .codec import MAX_RECORD_BYTES, CorruptRecordError, decode, encode
from .events import Event
from .reducer import StateBuilder

MAGIC = b"EVOQLOG1"
_FRAME = struct.Struct(">II")
_CHUNK = 1 << 20


class TornTailWarning(UserWarning):
    """The last record of a log file was cut short (a crash mid-write); it was ignored."""


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
    """msgpack-unpack the records after ``after`` into raw tuples (not yet validated).

    Garbled bytes raise :class:`~evoq.codec.CorruptRecordError` naming the position; feed the
    result to :meth:`evoq.reducer.StateBuilder.add_records`, which validates each record.
    """
    return unpack_records(log.read(after))


def unpack_records(entries: Iterable[tuple[Any, bytes]]) -> Iterator[tuple[Any, Any]]:
    """msgpack-unpack ``(position, bytes)`` entries into ``(position, raw tuple)``."""
    unpackb = msgpack.unpackb
    for pos, data in entries:
        try:
            yield pos, unpackb(data, raw=False, use_list=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises ValueError, TypeError and its own exceptions
            raise CorruptRecordError(
                f"not a msgpack record ({type(exc).__name__}: {exc})", offset=pos
            ) from None


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


class FileLog:
    """An append-only file of length-prefixed, CRC-checked msgpack records.

    Reads stream the file in 1 MiB chunks (memory independent of its length). Appends are one
    ``write`` under a process-wide and a file lock; with ``fsync=True`` each append is flushed to
    disk before it returns. Positions are byte offsets of the frames.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._end: int | None = None
        self.torn_tail: int | None = None
        """Offset of a torn last frame seen by the last read, if any."""

    def exists(self) -> bool:
        """Whether the file exists and is not empty."""
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, records: Sequence[bytes]) -> list[int]:
        """Append records in one write; return their offsets. Cuts off a torn tail first."""
        frames = []
        for r in records:
            if not r or len(r) > MAX_RECORD_BYTES:
                raise CorruptRecordError(
                    f"cannot append a record of {len(r)} bytes (1 to {MAX_RECORD_BYTES})"
                )
            frames.append(_FRAME.pack(len(r), zlib.crc32(r)) + r)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _flock(fd)
                end = self._valid_end(fd)
                head = MAGIC if end == 0 else b""
                offsets = []
                pos = end + len(head)
                for f in frames:
                    offsets.append(pos)
                    pos += len(f)
                frames.insert(0, head)
                os.lseek(fd, end, os.SEEK_SET)
                os.write(fd, b"".join(frames))
                if self.fsync:
                    os.fsync(fd)
                self._end = pos
            finally:
                os.close(fd)
            return offsets

    def _valid_end(self, fd: int) -> int:
        size = os.fstat(fd).st_size
        if self._end is not None and self._end == size:
            return size
        end = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TornTailWarning)
            for pos, data in self.read():
                end = pos + _FRAME.size + len(data)
        if end == 0 and size >= len(MAGIC):
            end = len(MAGIC)
        if end < size:
            warnings.warn(
                f"{self.path}: cutting off a torn last record at offset {end} ({size - end} bytes)",
                TornTailWarning,
                stacklevel=3,
            )
            os.ftruncate(fd, end)
        return end

    def read(self, after: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, record)`` for each frame after the one at ``after``."""
        self.torn_tail = None
        try:
            f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed in finally
        except FileNotFoundError:
            return
        try:
            magic = f.read(len(MAGIC))
            if not magic:
                return
            if magic != MAGIC:
                if MAGIC.startswith(magic):  # a header torn by a crash: no records yet
                    return
                raise CorruptRecordError(f"{self.path} is not an evoq log (bad magic {magic!r})", offset=0)
            pos = len(MAGIC)
            skip = after is not None
            if skip:
                pos = after  # type: ignore[assignment]
                f.seek(pos)
            buf = b""
            base = pos  # file offset of buf[0]
            i = 0
            eof = False
            unpack_from, hsize = _FRAME.unpack_from, _FRAME.size
            while True:
                avail = len(buf) - i
                need = hsize
                if avail >= hsize:
                    n, crc = unpack_from(buf, i)
                    start = base + i
                    if n == 0 or n > MAX_RECORD_BYTES:
                        raise CorruptRecordError(f"{self.path}: bad frame length {n}", offset=start)
                    need = hsize + n
                    if avail >= need:
                        data = buf[i + hsize : i + need]
                        i += need
                        if zlib.crc32(data) != crc:
                            if i == len(buf) and not f.read(1):
                                self._torn(start)
                                return
                            raise CorruptRecordError(f"{self.path}: checksum mismatch", offset=start)
                        if skip:
                            skip = False
                        else:
                            yield start, data
                        continue
                if eof:
                    if avail:
                        self._torn(base + i)
                    return
                chunk = f.read(max(_CHUNK, need))
                buf = buf[i:] + chunk
                base += i
                i = 0
                eof = not chunk
        finally:
            f.close()

    def _torn(self, offset: int) -> None:
        self.torn_tail = offset
        warnings.warn(
            f"{self.path}: torn last record at offset {offset} ignored", TornTailWarning, stacklevel=3
        )


def _flock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
