"""The contract every event-log backend must pass: memory, file, fakeredis and a real Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import pytest

from evoq.filelog import FileLog
from evoq.keys import Keys
from evoq.log import EventLog, MemoryLog
from evoq.redislog import RedisLog

from ..cluster import RedisServer

Factory = Callable[[], EventLog]


def memory_factory(tmp_path: Path) -> Factory:
    return MemoryLog


def file_factory(tmp_path: Path) -> Factory:
    return lambda: FileLog(tmp_path / "log.evoqlog")


def redis_factory(client: object) -> Factory:
    prefix = uuid.uuid4().hex[:12]  # a real server is shared by the module's tests
    names = iter(f"contract-{prefix}-{i}" for i in range(10_000))
    return lambda: RedisLog(client, Keys(next(names)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(params=["memory", "file", "fakeredis", "redis"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    if request.param == "memory":
        yield memory_factory(tmp_path)
    elif request.param == "file":
        yield file_factory(tmp_path)
    elif request.param == "fakeredis":
        yield redis_factory(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    else:
        yield redis_factory(request.getfixturevalue("real_redis").client())


def contract_tests(make_log: Factory) -> None:
    """Run every contract check on a fresh log from ``make_log`` (reused by other backends)."""
    log = make_log()
    assert list(log.read()) == []
    first = log.append([b"a", b"bb"])
    assert len(first) == 2
    second = log.append([b"ccc"])
    records = list(log.read())
    assert [r for _, r in records] == [b"a", b"bb", b"ccc"]
    assert [p for p, _ in records] == first + second
    assert [r for _, r in log.read(after=first[0])] == [b"bb", b"ccc"]
    assert list(log.read(after=second[0])) == []
    big = bytes(range(256)) * 4096
    (pos,) = log.append([big])
    assert list(log.read(after=second[0])) == [(pos, big)]
    assert log.append([]) == []


def test_contract(make_log: Factory) -> None:
    contract_tests(make_log)


def test_concurrent_appends_lose_nothing(make_log: Factory) -> None:
    log = make_log()
    n_threads, per = 4, 200

    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(per):
                log.append([f"{k}:{i}".encode(), f"{k}:{i}b".encode()])
        except BaseException as exc:  # surfaced below: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    records = [r.decode() for _, r in log.read()]
    per_thread = {k: sum(1 for r in records if r.startswith(f"{k}:")) for k in range(n_threads)}
    assert len(records) == n_threads * per * 2, per_thread
    for k in range(n_threads):
        mine = [r for r in records if r.startswith(f"{k}:")]
        # each batch stays contiguous and in order
        assert mine == [x for i in range(per) for x in (f"{k}:{i}", f"{k}:{i}b")]
    for a, b in zip(records[::2], records[1::2], strict=True):
        assert b == a + "b"


def test_reading_while_appending_continues_from_last_position(make_log: Factory) -> None:
    log = make_log()
    log.append([b"1"])
    last = None
    seen = []
    for round_ in range(3):
        for pos, r in log.read(after=last):
            seen.append(r)
            last = pos
        log.append([str(round_ + 2).encode()])
    assert seen == [b"1", b"2", b"3"]
