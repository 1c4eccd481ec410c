"""The file backend of the event log: length-prefixed, hash-chained msgpack records.

The file format (see :class:`FileLog`): a magic, then one hash-chained, length-prefixed frame
per msgpack record. A frame cut short at the end of the file (a torn write) is reported with a
:class:`TornTailWarning` and ignored, and the next append cuts it off; a bad frame with anything
after it is corruption and raises :class:`FrameError` naming its offset.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .codec import MAX_RECORD_BYTES, CorruptRecordError

_CHUNK = 1 << 20


class TornTailWarning(UserWarning):
    """The last record of a log file was cut short (a crash mid-write); it was ignored."""


class FrameError(CorruptRecordError):
    """A file frame is damaged: bad magic, impossible length, broken hash chain or CRC."""


class _Format:
    """One version of the file format: its magic and how a frame header checks its payload."""

    def __init__(self, magic: bytes, header: str, chained: bool) -> None:
        self.magic = magic
        self.header = struct.Struct(header)
        self.chained = chained

    def frame(self, payload: bytes, prev: bytes) -> tuple[bytes, bytes]:
        """The frame for ``payload`` after a frame whose chain value is ``prev``; and its own."""
        if self.chained:
            digest = _chain(prev, payload)
            return self.header.pack(len(payload), digest) + payload, digest
        return self.header.pack(len(payload), zlib.crc32(payload)) + payload, prev


def _chain(prev: bytes, payload: bytes) -> bytes:
    return hashlib.blake2b(prev + payload, digest_size=DIGEST_SIZE).digest()


DIGEST_SIZE = 16
GENESIS = bytes(DIGEST_SIZE)
"""The chain value before the first record (the experiment's creation record)."""
V1 = _Format(b"EVOQLOG1", ">II", chained=False)
V2 = _Format(b"EVOQLOG2", f">I{DIGEST_SIZE}s", chained=True)
FORMATS = {f.magic: f for f in (V1, V2)}
MAGIC = V2.magic


class FileLog:
    """An append-only file of length-prefixed, hash-chained msgpack records.

    Format 2 (written by this evoq): the magic ``EVOQLOG2``, then per record a big-endian u32
    payload length, a 16-byte BLAKE2b digest of (the previous record's digest + this payload),
    and the payload. The first digest chains to 16 zero bytes, so every record is bound to all
    before it, back to the experiment's creation record: editing, inserting or dropping a record
    breaks the chain at that record. Format 1 (``EVOQLOG1``, a CRC-32 per frame, no chain) is
    still read, and appended to in its own format.

    Reads stream the file in 1 MiB chunks (memory independent of its length) and check every
    frame. Appends are one ``write`` under a process-wide and a file lock; with ``fsync=True``
    each append reaches the disk before it returns. Positions are byte offsets of the frames.
    After a complete read from the start, :attr:`head` is the last record's chain digest.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._end: int | None = None
        self._prev = GENESIS
        self.torn_tail: int | None = None
        """Offset of a torn last frame seen by the last read, if any."""
        self.head: bytes | None = None
        """Chain digest of the last record, after a full read of a format-2 file."""

    def exists(self) -> bool:
        """Whether the file exists and is not empty."""
        return self.path.exists() and self.path.stat().st_size > 0

    def format(self) -> _Format:
        """The format of the file (format 2 for a file not written yet)."""
        try:
            with open(self.path, "rb") as f:
                magic = f.read(len(MAGIC))
        except FileNotFoundError:
            return V2
        return FORMATS.get(magic, V2)

    def append(self, records: Sequence[bytes]) -> list[int]:
        """Append records in one write; return their offsets. Cuts off a torn tail first."""
        for r in records:
            if not r or len(r) > MAX_RECORD_BYTES:
                raise CorruptRecordError(
                    f"cannot append a record of {len(r)} bytes (1 to {MAX_RECORD_BYTES})"
                )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _flock(fd)
                end = self._valid_end(fd)
                fmt = self.format() if end else V2
                chunks = [fmt.magic] if end == 0 else []
                pos = end + (len(fmt.magic) if end == 0 else 0)
                prev = self._prev
                offsets = []
                for r in records:
                    frame, prev = fmt.frame(r, prev)
                    offsets.append(pos)
                    chunks.append(frame)
                    pos += len(frame)
                os.lseek(fd, end, os.SEEK_SET)
                os.write(fd, b"".join(chunks))
                if self.fsync:
                    os.fsync(fd)
                self._end, self._prev = pos, prev
            finally:
                os.close(fd)
            return offsets

    def _valid_end(self, fd: int) -> int:
        size = os.fstat(fd).st_size
        if self._end is not None and self._end == size:
            return size
        end, self._prev = 0, GENESIS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TornTailWarning)
            for _ in self.read():
                pass
        if self.torn_tail is not None:
            end = self.torn_tail
        elif size >= len(MAGIC):
            end = size
        if self.head is not None:
            self._prev = self.head
        if end < size:
            warnings.warn(
                f"{self.path}: cutting off a torn last record at offset {end} ({size - end} bytes)",
                TornTailWarning,
                stacklevel=3,
            )
            os.ftruncate(fd, end)
        return end

    def read(self, after: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, record)`` for each frame after the one at ``after``.

        Every frame is checked (its digest chain, or its CRC in format 1); a bad frame with
        anything after it raises FrameError naming its offset.
        """
        self.torn_tail = None
        self.head = None
        try:
            f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed in finally
        except FileNotFoundError:
            return
        try:
            magic = f.read(len(MAGIC))
            fmt = FORMATS.get(magic)
            if fmt is None:
                if MAGIC.startswith(magic) or V1.magic.startswith(magic):  # header torn at creation
                    if magic:
                        self.torn_tail = 0
                    return
                raise FrameError(f"{self.path} is not an evoq log (bad magic {magic!r})", offset=0)
            yield from self._frames(f, fmt, after)
        finally:
            f.close()

    def _frames(self, f: Any, fmt: _Format, after: int | None) -> Iterator[tuple[int, bytes]]:
        pos = len(fmt.magic) if after is None else after
        skip = after is not None
        if skip:
            f.seek(pos)
        buf = b""
        base = pos  # file offset of buf[0]
        i = 0
        eof = False
        unpack_from, hsize = fmt.header.unpack_from, fmt.header.size
        chained = fmt.chained
        prev = before = GENESIS
        crc32, blake2b = zlib.crc32, hashlib.blake2b
        while True:
            avail = len(buf) - i
            need = hsize
            if avail >= hsize:
                n, check = unpack_from(buf, i)
                start = base + i
                if n == 0 or n > MAX_RECORD_BYTES:
                    raise FrameError(f"{self.path}: bad frame length {n}", offset=start)
                need = hsize + n
                if avail >= need:
                    data = buf[i + hsize : i + need]
                    i += need
                    if skip:
                        skip, prev = False, check
                        continue
                    if chained:
                        before = prev
                        ok = blake2b(prev + data, digest_size=DIGEST_SIZE).digest() == check
                        prev = check
                    else:
                        ok = crc32(data) == check
                    if not ok:
                        if i == len(buf) and not f.read(1):
                            self._torn(start)
                            self.head = before if chained and after is None else None
                            return
                        what = "hash chain broken" if chained else "checksum mismatch"
                        raise FrameError(f"{self.path}: {what}", offset=start)
                    yield start, data
                    continue
            if eof:
                if avail:
                    self._torn(base + i)
                if chained and after is None:
                    self.head = prev
                return
            chunk = f.read(max(_CHUNK, need))
            buf = buf[i:] + chunk
            base += i
            i = 0
            eof = not chunk

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
