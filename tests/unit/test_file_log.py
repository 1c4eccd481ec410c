import os
import tracemalloc
import warnings

import pytest

from evoq.codec import CorruptRecordError, encode
from evoq.events import TrialStarted
from evoq.filelog import MAGIC, FileLog, TornTailWarning
from evoq.log import read_events


def fill(path, n=10):
    log = FileLog(path)
    offsets = log.append([encode(TrialStarted(i, 0, "w", 0.0)) for i in range(n)])
    return log, offsets


def test_torn_last_record_is_reported_ignored_and_cut_off_on_append(tmp_path):
    path = tmp_path / "x.evoqlog"
    for cut in (1, 5, 8, 9, 20):
        path.unlink(missing_ok=True)
        _, offsets = fill(path)
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - cut)
        with pytest.warns(TornTailWarning, match=str(offsets[-1])):
            got = [e.trial for _, e in read_events(FileLog(path))]
        assert got == list(range(9))
    with pytest.warns(TornTailWarning, match="cutting off"):
        FileLog(path).append([encode(TrialStarted(99, 0, "w", 0.0))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [e.trial for _, e in read_events(FileLog(path))] == [*range(9), 99]


def test_corruption_in_the_middle_names_the_offset(tmp_path):
    path = tmp_path / "x.evoqlog"
    _, offsets = fill(path)
    data = bytearray(path.read_bytes())
    data[offsets[4] + 10] ^= 0x40  # flip a bit in record 4's payload
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError) as info:
        list(FileLog(path).read())
    assert info.value.offset == offsets[4] and f"offset {offsets[4]}" in str(info.value)
    # appending refuses to write after corruption: nothing is lost or overwritten
    with pytest.raises(CorruptRecordError):
        FileLog(path).append([b"x"])
    assert path.read_bytes() == bytes(data)


def test_bad_length_and_bad_magic(tmp_path):
    path = tmp_path / "x.evoqlog"
    _, offsets = fill(path)
    data = bytearray(path.read_bytes())
    data[offsets[2] : offsets[2] + 4] = (0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match="frame length") as info:
        list(FileLog(path).read())
    assert info.value.offset == offsets[2]
    other = tmp_path / "y"
    other.write_bytes(b"not a log at all")
    with pytest.raises(CorruptRecordError, match="not an evoq log"):
        list(FileLog(other).read())
    (tmp_path / "z").write_bytes(MAGIC[:3])  # header torn at creation
    assert list(FileLog(tmp_path / "z").read()) == []


def test_streaming_read_uses_constant_memory(tmp_path):
    path = tmp_path / "big.evoqlog"
    log = FileLog(path)
    rec = encode(TrialStarted(1, 0, "w" * 200, 0.0))
    for _ in range(20):
        log.append([rec] * 10_000)
    assert path.stat().st_size > 40_000_000
    tracemalloc.start()
    n = sum(1 for _ in log.read())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 200_000
    assert peak < 8_000_000, peak  # a couple of 1 MiB chunks, not the 40 MB file


def test_fsync_option_writes_through(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    FileLog(tmp_path / "a", fsync=True).append([b"x"])
    FileLog(tmp_path / "b").append([b"x"])
    assert len(calls) == 1
