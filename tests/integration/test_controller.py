"""The controller in process, on fakeredis: its one commit path under conflicts, a stream that
loses its tail, stop requests, a long first replay, and Redis going away and coming back."""

from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis
import pytest

from evoq.audit import audit_entries
from evoq.codec import decode, encode
from evoq.controller import Controller, ControllerOptions
from evoq.events import TrialCompleted, TrialStarted, TrialSubmitted
from evoq.keys import STREAM_FIELD, Keys
from evoq.redislog import RedisLog
from evoq.strategy import Strategy

from ..sim import created

STRATEGY = Strategy(population_size=4, sample_size=2, cycles=10)


def make(server: fakeredis.FakeServer, strategy: Strategy = STRATEGY, **opts: Any) -> Controller:
    opts.setdefault("capacity", lambda: 4)  # the population size: the initial trials all go out
    opts.setdefault("check_interval", 0.05)
    client = fakeredis.FakeRedis(server=server)
    return Controller(client, created(strategy, name="c"), ControllerOptions(**opts))


def in_thread(fn: Any, timeout: float = 5.0) -> Any:
    """Run ``fn`` in a thread; fail (instead of hanging) if it does not return in time."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} did not return within {timeout}s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def submissions(client: Any) -> list[TrialSubmitted]:
    events = [decode(d) for _, d in RedisLog(client, Keys("c")).read()]
    return [e for e in events if isinstance(e, TrialSubmitted)]


def test_a_commit_aborted_by_a_concurrent_append_decides_again_on_the_new_log():
    server = fakeredis.FakeServer()
    ctl = make(server, capacity=lambda: 4)
    ctl.open()
    assert ctl.submit_ready() == 4  # the initial population, one run per free worker
    other = fakeredis.FakeRedis(server=server)
    wlog = RedisLog(other, Keys("c"))
    for t in range(4):  # the workers report
        wlog.append(
            [encode(TrialStarted(t, 0, "w", 1.0)), encode(TrialCompleted(t, 0, float(t), 0.1, "w", 1.0))]
        )
    ctl.catch_up()
    script = ctl._commit_script
    calls = []

    def racing(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # a result lands between the decision and its commit
            wlog.append([encode(TrialCompleted(0, 0, 99.0, 0.1, "w", 1.0))])  # a duplicate: ignored
            wlog.append([encode(TrialStarted(4, 0, "w", 1.0))])
        return script(**kwargs)

    ctl._commit_script = racing  # type: ignore[method-assign]
    before = ctl.conflicts
    assert ctl.submit_ready() >= 1
    assert ctl.conflicts - before == 1  # the completion aborted the first commit; the rest went through
    events = [decode(d) for _, d in RedisLog(other, Keys("c")).read()]
    first_evolve = next(
        i for i, e in enumerate(events) if isinstance(e, TrialSubmitted) and e.phase == "evolve"
    )
    assert first_evolve > max(i for i, e in enumerate(events) if isinstance(e, TrialCompleted))
    assert audit_entries(RedisLog(other, Keys("c")).read()).ok  # every decision re-derives


def test_a_worker_s_started_and_progress_events_do_not_stop_a_commit():
    """Neither changes anything a proposal reads: the commit goes through and hands them back,
    folded before the new submission, in stream order."""
    from evoq.events import TrialProgressed

    server = fakeredis.FakeServer()
    ctl = make(server)
    ctl.open()
    ctl.submit_ready()
    wlog = RedisLog(fakeredis.FakeRedis(server=server), Keys("c"))
    for t in range(4):
        wlog.append([encode(TrialCompleted(t, 0, float(t), 0.1, "w", 1.0))])
    ctl.catch_up()
    wlog.append([encode(TrialStarted(4, 0, "w", 2.0)), encode(TrialProgressed(4, 0, 1, 0.5, 2.0))])
    before, folded = ctl.conflicts, ctl.state.events
    assert ctl.submit_ready() == 4
    assert ctl.conflicts == before and ctl.state.events == folded + 2 + 4
    ids = [pos for pos, _ in wlog.read()]
    assert ctl.last_id == ids[-1]
    assert audit_entries(wlog.read()).ok


def test_a_stream_that_lost_its_tail_is_replayed_and_the_same_decisions_follow():
    server = fakeredis.FakeServer()
    ctl = make(server)
    ctl.open()
    ctl.submit_ready()
    client = fakeredis.FakeRedis(server=server)
    stream = Keys("c").stream
    entries = client.xrange(stream)
    original = submissions(client)
    assert len(original) == 4
    # Redis restarted from an older AOF: the last two submissions (and their jobs) are gone
    client.delete(stream)
    for entry_id, fields in entries[:3]:
        client.xadd(stream, {STREAM_FIELD: fields[STREAM_FIELD]}, id=entry_id)
    in_thread(ctl.step)  # used to wait forever (or spin) on the stale tail
    again = submissions(client)
    assert [(s.trial, s.config) for s in again] == [(s.trial, s.config) for s in original]
    assert audit_entries(RedisLog(client, Keys("c")).read()).ok


def test_a_stream_that_lost_the_experiment_stops_the_controller_with_a_clear_error():
    server = fakeredis.FakeServer()
    ctl = make(server)
    ctl.open()
    ctl.submit_ready()
    fakeredis.FakeRedis(server=server).delete(Keys("c").stream)
    with pytest.raises(Exception, match="lost the entries this controller had folded") as info:
        in_thread(ctl.step)
    assert "Error" in type(info.value).__name__


class AlwaysConflicting:
    """A commit script that always answers that the log moved on (and counts its calls)."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, **kwargs: Any) -> Any:
        self.attempts += 1
        return [b"conflict"]


@pytest.mark.parametrize("action", ["finish", "lost", "submit"])
def test_every_retry_loop_honours_stop_and_backs_off(action):
    server = fakeredis.FakeServer()
    ctl = make(server, Strategy(population_size=4, sample_size=2, cycles=4 if action == "finish" else 10))
    ctl.open()
    ctl.submit_ready()
    run = ctl.state.running[0]
    if action != "lost":  # due to finish (cycles=4), or to breed the next trial
        for t in range(4):
            RedisLog(ctl.client, Keys("c")).append([encode(TrialCompleted(t, 0, 1.0, 0.1, "w", 1.0))])
        ctl.catch_up()
    jammed = AlwaysConflicting()
    ctl._commit_script = jammed  # type: ignore[method-assign]
    calls = {
        "finish": ctl.finish_if_due,
        "lost": lambda: ctl.declare_lost(run, "test"),
        "submit": ctl.submit_ready,
    }
    threading.Timer(0.5, ctl.stop).start()
    t0 = time.monotonic()
    in_thread(calls[action], timeout=3.0)
    assert time.monotonic() - t0 < 1.5
    assert 1 <= jammed.attempts <= 40  # backed off instead of spinning


def test_a_first_replay_longer_than_the_lease_keeps_the_lease():
    server = fakeredis.FakeServer()
    ctl = make(server, lease_ttl=2.0)
    ctl.open()
    ctl.submit_ready()
    log = RedisLog(ctl.client, Keys("c"))
    filler = [encode(TrialStarted(10_000 + i, 0, "w", 1.0)) for i in range(1000)]
    for _ in range(25):  # 25,000 entries: three XRANGE batches
        log.append(filler)
    ctl.lease.release()
    slow = make(server, lease_ttl=2.0)
    xrange = slow.client.xrange

    def slow_xrange(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)  # each batch of the replay takes 1 s: 3 s in all, longer than the TTL
        return xrange(*args, **kwargs)

    slow.client.xrange = slow_xrange  # type: ignore[method-assign]
    slow.open()
    slow.lease.renew(force=True)  # still ours
    assert slow.state.events > 25_000


def test_after_redis_comes_back_the_controller_resumes_within_a_fraction_of_a_second():
    server = fakeredis.FakeServer()
    ctl = make(server, lease_ttl=30.0)
    rounds: list[float] = []
    ctl.on_progress = lambda _state: rounds.append(time.monotonic())
    worker = fakeredis.FakeRedis(server=server)
    t = threading.Thread(target=ctl.run, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while len(submissions(worker)) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        ctl._missing[(0, 0)] = time.monotonic() - 1000  # a timer running when Redis went away
        server.connected = False
        time.sleep(3.5)  # long enough for a doubling backoff to reach seconds
        rounds.clear()
        server.connected = True
        back = time.monotonic()
        deadline = back + 5
        while not rounds and time.monotonic() < deadline:
            time.sleep(0.005)
        assert rounds, "the controller did not resume"
        assert rounds[0] - back < 0.6
        assert (0, 0) not in ctl._missing  # no run is judged on time Redis was away
    finally:
        server.connected = True
        ctl.stop()
        t.join(5)


def test_experiments_sharing_a_queue_split_its_workers():
    server = fakeredis.FakeServer()
    admin = fakeredis.FakeRedis(server=server)
    connections = []
    for i in range(5):  # five RQ workers registered on the queue, connected under their names
        admin.sadd("rq:workers:evoq", f"rq:worker:w{i}")
        admin.hset(f"rq:worker:w{i}", "state", "idle")
        connections.append(fakeredis.FakeRedis(server=server, client_name=f"w{i}"))
        connections[-1].ping()
    admin.sadd("rq:workers:evoq", "rq:worker:dead")  # a dead worker whose key expired
    admin.sadd("rq:workers:evoq", "rq:worker:gone")  # one whose key lingers, its connection gone
    admin.hset("rq:worker:gone", "state", "idle")
    controllers = []
    for name in ("alpha", "beta"):
        client = fakeredis.FakeRedis(server=server)
        controllers.append(
            Controller(client, created(STRATEGY, name=name), ControllerOptions(check_interval=0.05))
        )
    alpha, beta = controllers
    assert alpha.live_workers() == 5  # alone on the queue: all of it
    beta_share = beta.live_workers()
    alpha._share_cache = (-1e9, 1)  # its next look (every second)
    shares = [alpha.live_workers(), beta_share]
    assert shares == [3, 2]  # the remainder goes to the first by name
    assert sorted(admin.zrange("evoq:queue:evoq:controllers", 0, -1)) == [b"alpha", b"beta"]


def test_a_lost_run_s_rq_reason_is_read_with_a_bounded_inflate():
    """RQ's result entry for a failed job is anyone's write: a zlib bomb there (256 MiB from
    0.25 MB) is dropped after 64 KiB of inflating, a real reason is read to its last line."""
    import base64
    import zlib

    server = fakeredis.FakeServer()
    ctl = make(server)
    key = "rq:results:evoq-c-0-0"
    trace = "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n"
    ctl.client.xadd(key, {"exc_string": base64.b64encode(zlib.compress(trace.encode()))})
    assert ctl._failure_detail("evoq-c-0-0") == ": RuntimeError: CUDA out of memory"
    ctl.client.xadd(key, {"exc_string": base64.b64encode(zlib.compress(b"\0" * (256 << 20), 9))})
    assert ctl._failure_detail("evoq-c-0-0") == ""  # inflated whole, its "last line" is 256 MiB of NULs
