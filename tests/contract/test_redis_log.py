"""What only the Redis Stream log does: paging, blocking waits, foreign entries, key names, the
one size limit for records."""

from __future__ import annotations

import fakeredis
import pytest

from evoq.codec import CorruptRecordError, decode, encode
from evoq.events import TrialStarted
from evoq.keys import Keys
from evoq.log import read_events
from evoq.redislog import RedisLog

from ..cluster import RedisServer


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def test_reads_page_through_long_streams(real_server):
    log = RedisLog(real_server.client(), Keys("paging"))
    records = [encode(TrialStarted(i, 0, "w", 0.0)) for i in range(25_000)]
    log.append(records)
    assert [e.trial for _, e in read_events(log)] == list(range(25_000))


def test_wait_blocks_until_new_entries(real_server):
    log = RedisLog(real_server.client(), Keys("waiting"))
    (first,) = log.append([b"a"])
    assert log.wait(first, 50) == []
    log.append([b"b"])
    assert [r for _, r in log.wait(first, 1000)] == [b"b"]
    assert log.last_id() is not None


def test_foreign_stream_entries_are_reported_with_their_id(real_server):
    client = real_server.client()
    keys = Keys("foreign")
    entry = client.xadd(keys.stream, {"not-e": "x"}).decode()
    ((pos, record),) = list(RedisLog(client, keys).read())
    assert pos == entry
    with pytest.raises(CorruptRecordError, match="no 'e' field") as info:
        decode(record, offset=pos)
    assert info.value.offset == entry and entry in str(info.value)


def test_keys_are_hash_tagged_and_names_checked():
    k = Keys("digits")
    assert k.stream == "evoq:{digits}:events" and k.lease.startswith("evoq:{digits}:")
    assert k.job_id(3, 1) == "evoq-digits-3-1"
    with pytest.raises(ValueError, match="invalid"):
        Keys("has space")


def test_records_over_the_size_limit_are_refused_by_the_writer():
    from evoq.codec import MAX_RECORD_BYTES

    log = RedisLog(fakeredis.FakeRedis(), Keys("big"))
    with pytest.raises(CorruptRecordError, match="refusing"):
        log.append([b"x" * (MAX_RECORD_BYTES + 1)])
    with pytest.raises(CorruptRecordError):
        log.append([b""])
    assert list(log.read()) == []
