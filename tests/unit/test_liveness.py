"""The lost-run decision table (:func:`evoq.liveness.judge`), row by row."""

from __future__ import annotations

import pytest

from evoq.liveness import JobProbe, judge

TTL = 10.0


def verdict(status, in_queue=None, beating=False, since=None, now=100.0):
    return judge(
        "evoq-x-1-0", "w1", JobProbe(status, in_queue, beating), since=since, now=now, heartbeat_ttl=TTL
    )


def test_a_vanished_job_is_lost_at_once():
    v = verdict(None)
    assert v.reason is not None and "gone" in v.reason and v.since is None


@pytest.mark.parametrize("status", ["queued", "deferred", "scheduled"])
def test_waiting_jobs_are_alive(status):
    assert verdict(status, in_queue=True) == verdict(status, in_queue=None)
    v = verdict(status, in_queue=True, since=50.0)
    assert v.reason is None and v.since is None  # the timer is cleared


def test_a_job_taken_off_its_queue_gets_the_heartbeat_ttl_to_start():
    # BLPOP (a worker on several queues, or an old Redis) leaves a taken job in no list until
    # the worker marks it started: this is not a lost job, for a while
    first = verdict("queued", in_queue=False, now=100.0)
    assert first.reason is None and first.since == 100.0
    later = verdict("queued", in_queue=False, since=first.since, now=100.0 + TTL - 0.01)
    assert later.reason is None and later.since == 100.0
    lost = verdict("queued", in_queue=False, since=first.since, now=100.0 + TTL)
    assert lost.reason is not None and "not started" in lost.reason


def test_started_runs_live_by_their_heartbeat():
    assert verdict("started", beating=True, since=10.0) == verdict("started", beating=True)
    assert verdict("started", beating=True).reason is None
    first = verdict("started", beating=False, now=100.0)
    assert first.reason is None and first.since == 100.0  # the first beat may be on its way
    lost = verdict("started", beating=False, since=100.0, now=102.0)
    assert lost.reason is not None and "w1 stopped heartbeating" in lost.reason


@pytest.mark.parametrize("status", ["finished", "failed", "stopped", "canceled"])
def test_ended_jobs_without_a_report_are_lost_at_once(status):
    v = verdict(status)
    assert v.reason == f"RQ job evoq-x-1-0 ended {status} without reporting"


def test_fair_shares_add_up_to_the_workers_and_never_stall():
    from evoq.liveness import fair_share

    names = ["b", "a", "c"]
    for workers in (1, 2, 3, 5, 10, 1000):
        shares = [fair_share(workers, names, me) for me in names]
        assert sum(shares) == max(workers, len(names)) if workers < len(names) else sum(shares) == workers
        assert max(shares) - min(shares) <= 1 and min(shares) >= 1
    assert fair_share(10, ["a"], "b") == 5  # not registered yet: counts itself in
    assert fair_share(10, [], "a") == 10
