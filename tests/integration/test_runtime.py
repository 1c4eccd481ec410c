"""Integration tests: real redis-server, real `rq worker` processes, `evoq run` as a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from evoq.audit import audit_entries, check_invariants
from evoq.events import ExperimentFinished, TrialCompleted, TrialFailed, TrialStarted, TrialSubmitted
from evoq.keys import Keys
from evoq.redislog import RedisLog
from evoq.reducer import replay
from evoq.report import summary

from ..cluster import (
    RedisServer,
    Worker,
    controller,
    one_line_error,
    stream_events,
    wait_for,
    worker_env,
    write_spec,
)

SPACE = "x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = [0, 1, 2, 3, 4, 5, 6, 7]"
SERIALIZER = "workers.serializer.MsgpackSerializer"


@pytest.fixture
def server(tmp_path: Path):
    s = RedisServer(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def workers(server: RedisServer):
    started: list[Worker] = []

    def start(n: int = 1, **kw) -> list[Worker]:
        new = [Worker(server.url, f"w{len(started) + i}-{time.monotonic_ns()}", **kw) for i in range(n)]
        started.extend(new)
        return new

    yield start
    for w in started:
        w.stop()


def finish(proc, timeout: float = 90.0) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    data = json.loads(out) if out.strip() else {}
    return proc.returncode, data, err


def assert_sound(server: RedisServer, name: str, final: dict | None = None) -> list:
    events = [e for _, e in stream_events(server.client(), name)]
    assert check_invariants(events) == []
    audit = audit_entries(RedisLog(server.client(), Keys(name)).read())
    assert audit.ok, audit.findings  # every decision re-derives from the log, crashes or not
    if final is not None:
        replayed = summary(replay(events))
        assert {k: v for k, v in final.items() if k != "events"} == {
            k: v for k, v in replayed.items() if k != "events"
        }
    return events


def test_full_small_experiment(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "full", "tests.trials:quick", SPACE, population_size=6, sample_size=2, cycles=20
    )
    workers(2)
    code, final, err = finish(controller(spec, server.url))
    assert code == 0, err
    assert final["status"] == "completed" and final["results"] == 20 and final["completed"] == 20
    events = assert_sound(server, "full", final)
    assert len(final["population"]) == 6
    phases = [e.phase for e in events if isinstance(e, TrialSubmitted)]
    assert phases[:6] == ["init"] * 6 and set(phases[6:]) == {"evolve"}
    assert isinstance(events[-1], ExperimentFinished)
    started = {e.trial: e.worker for e in events if isinstance(e, TrialStarted)}
    assert len(set(started.values())) == 2  # both workers took part


def test_sigkill_controller_mid_run_and_restart(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml",
        "ctlkill",
        "tests.trials:quick",
        SPACE,
        population_size=6,
        sample_size=2,
        cycles=40,
    )
    workers(2, EVOQ_TEST_SLEEP="0.1")
    client = server.client()
    for round_ in range(3):
        proc = controller(spec, server.url)
        target = 8 + 8 * round_
        wait_for(
            lambda t=target: (
                sum(isinstance(e, TrialCompleted) for _, e in stream_events(client, "ctlkill")) >= t
            )
        )
        proc.kill()
        proc.wait()
        client.delete("evoq:{ctlkill}:lease")  # a SIGKILLed controller cannot release; skip the TTL wait
    code, final, err = finish(controller(spec, server.url))
    assert code == 0, err
    assert_sound(server, "ctlkill", final)
    assert final["results"] == 40


def test_second_controller_exits_with_clear_message(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "dup", "tests.trials:quick", SPACE, population_size=6, sample_size=2, cycles=30
    )
    workers(1, EVOQ_TEST_SLEEP="0.2")
    first = controller(spec, server.url)
    wait_for(lambda: server.client().exists("evoq:{dup}:lease"))
    second = controller(spec, server.url)
    code, _, err = finish(second)
    assert code == 2 and "already run by another controller" in err and "Traceback" not in err
    code, final, err = finish(first)
    assert code == 0, err
    assert_sound(server, "dup", final)


def test_sigkill_work_horse_is_detected_and_retried(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "horse", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=8
    )
    (w,) = workers(1, EVOQ_TEST_SLEEP="1.0")
    proc = controller(spec, server.url)
    client = server.client()
    wait_for(lambda: any(isinstance(e, TrialStarted) for _, e in stream_events(client, "horse")))
    killed_at = time.time()
    import os

    os.kill(w.horse(), signal.SIGKILL)
    lost = wait_for(
        lambda: [
            e for _, e in stream_events(client, "horse") if isinstance(e, TrialFailed) and e.kind == "lost"
        ],
        timeout=30,
    )
    detect = lost[0].at - killed_at
    print(f"horse SIGKILL detected as lost after {detect:.2f}s: {lost[0].message}")
    assert detect < 30
    assert "Work-horse terminated unexpectedly" in lost[0].message  # RQ's reason, read bounded
    code, final, err = finish(proc)
    assert code == 0, err
    events = assert_sound(server, "horse", final)
    t = lost[0].trial
    assert [e.attempt for e in events if isinstance(e, TrialSubmitted) and e.trial == t] == [0, 1]


def test_sigkill_whole_worker_is_detected_and_a_fresh_worker_finishes(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "wkill", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=8
    )
    (w,) = workers(1, EVOQ_TEST_SLEEP="1.0")
    proc = controller(spec, server.url)
    client = server.client()
    wait_for(lambda: any(isinstance(e, TrialStarted) for _, e in stream_events(client, "wkill")))
    w.horse()
    killed_at = time.time()
    w.kill(signal.SIGKILL, with_horse=True)
    workers(1, EVOQ_TEST_SLEEP="0.05")
    lost = wait_for(
        lambda: [
            e for _, e in stream_events(client, "wkill") if isinstance(e, TrialFailed) and e.kind == "lost"
        ],
        timeout=30,
    )
    detect = lost[0].at - killed_at
    print(f"whole-worker SIGKILL detected as lost after {detect:.2f}s: {lost[0].message}")
    assert detect < 30
    code, final, err = finish(proc)
    assert code == 0, err
    assert_sound(server, "wkill", final)


def test_sigterm_worker_finishes_its_trial(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "term", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=6
    )
    (w,) = workers(1, EVOQ_TEST_SLEEP="0.8")
    proc = controller(spec, server.url)
    client = server.client()
    wait_for(lambda: any(isinstance(e, TrialStarted) for _, e in stream_events(client, "term")))
    w.kill(signal.SIGTERM)
    w.proc.wait(timeout=20)
    events = [e for _, e in stream_events(client, "term")]
    first = next(e for e in events if isinstance(e, TrialStarted))
    assert any(isinstance(e, TrialCompleted) and e.trial == first.trial for e in events)  # warm shutdown
    workers(1)
    code, final, err = finish(proc)
    assert code == 0, err
    assert_sound(server, "term", final)


def test_failing_trials_are_classified(tmp_path, server, workers):
    space = 'mode = ["raise", "nan", "string", "none", "hang", "ok"]'
    spec = write_spec(
        tmp_path / "s.toml", "bad", "tests.trials:misbehave", space,
        population_size=6, sample_size=2, cycles=6, on_failure="worst", trial_timeout=2.0, dedup=True,
    )  # fmt: skip
    workers(2)
    code, final, err = finish(controller(spec, server.url), timeout=120)
    assert code == 0, err
    events = assert_sound(server, "bad", final)
    failed = {e.kind for e in events if isinstance(e, TrialFailed)}
    assert {"error", "invalid_metric", "timeout"} <= failed
    messages = " | ".join(e.message for e in events if isinstance(e, TrialFailed))
    assert "ZeroDivisionError" in messages and "non-finite" in messages and "'0.93'" in messages


def test_max_failures_ends_an_all_failing_experiment(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml",
        "doomed",
        "tests.trials:always_fails",
        SPACE,
        population_size=4,
        sample_size=2,
        cycles=50,
        max_failures=5,
    )
    workers(1)
    code, final, err = finish(controller(spec, server.url))
    assert code == 1, err
    assert final["status"] == "failed" and "5 trials failed in a row" in final["reason"]


def midway(tmp_path: Path, server: RedisServer, workers: Any, name: str, cycles: int, results: int) -> Any:
    """A controller and two workers on ``server``, once ``results`` trials completed."""
    spec = write_spec(
        tmp_path / "s.toml",
        name,
        "tests.trials:quick",
        SPACE,
        population_size=6,
        sample_size=2,
        cycles=cycles,
    )
    workers(2, EVOQ_TEST_SLEEP="0.1")
    proc = controller(spec, server.url)
    client = server.client()
    wait_for(lambda: sum(isinstance(e, TrialCompleted) for _, e in stream_events(client, name)) >= results)
    return proc


def test_redis_restart_mid_run(tmp_path, server, workers):
    proc = midway(tmp_path, server, workers, "rr", cycles=30, results=8)
    time.sleep(1.2)  # let AOF everysec flush
    server.restart(signal.SIGTERM, down=1.0)
    # busy rq workers exit when their Redis goes away; a supervisor (systemd, Heroku) restarts them
    workers(2, EVOQ_TEST_SLEEP="0.1")
    code, final, err = finish(proc, timeout=120)
    assert code == 0, err
    assert_sound(server, "rr", final)


def test_redis_restarted_empty_mid_run_stops_the_controller_with_one_line(tmp_path, server, workers):
    """A Redis that comes back without its data (no persistence, a new instance) no longer holds
    the experiment: before, the controller replayed nothing and died on an assertion (exit 1, a
    traceback); now it says what happened, exit 2."""
    proc = midway(tmp_path, server, workers, "gone", cycles=400, results=4)
    server.stop(signal.SIGKILL)
    for f in server.directory.rglob("*.aof*"):
        f.unlink()
    for f in (
        (server.directory / "appendonlydir").glob("*")
        if (server.directory / "appendonlydir").exists()
        else []
    ):
        f.unlink()
    server.start()
    out, err = proc.communicate(timeout=120)
    one_line_error(
        subprocess.CompletedProcess([], proc.returncode, out, err), "no longer holds the experiment"
    )


def test_a_worker_killed_hard_restarts_under_its_name_at_once(tmp_path, server):
    """A fixed-name worker killed with SIGKILL (what a supervisor then restarts) was refused by
    RQ for about a minute ("There exists an active worker named ... already")."""
    client = server.client()
    name = f"gpu0-{time.monotonic_ns()}"
    env = {**worker_env(), "REDIS_URL": server.url}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "evoq.cli", "worker", "--name", name], env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first = start()
    wait_for(lambda: client.sismember("rq:workers", f"rq:worker:{name}"), timeout=60)
    first.kill()
    first.wait()
    second = start()
    try:
        wait_for(lambda: client.hget(f"rq:worker:{name}", "pid") == str(second.pid).encode(), timeout=60)
        time.sleep(1.0)
        assert second.poll() is None, second.communicate()
        third = start()  # the name's holder is alive: never cleared
        _, third_err = third.communicate(timeout=60)
        assert third.returncode != 0 and "cleared" not in third_err
        assert second.poll() is None and client.hget(f"rq:worker:{name}", "pid") == str(second.pid).encode()
    finally:
        second.terminate()
        _, err = second.communicate(timeout=60)
    assert f"worker name {name!r} was still registered by process {first.pid}, which is gone" in err


def test_allowlist_refuses_other_trials(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml",
        "deny",
        "tests.trials:quick",
        SPACE,
        population_size=4,
        sample_size=2,
        cycles=10,
        max_failures=3,
    )
    workers(1, EVOQ_ALLOW="somethingelse:*")
    code, _final, _err = finish(controller(spec, server.url))
    assert code == 1
    events = [e for _, e in stream_events(server.client(), "deny")]
    msgs = [e.message for e in events if isinstance(e, TrialFailed)]
    assert msgs and all("not in this worker's allowlist" in m for m in msgs)


def test_heroku_dyno_restart_preempts_then_the_trial_runs_again(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "dyno", "tests.trials:quick", SPACE, population_size=3, sample_size=2, cycles=4
    )
    (w,) = workers(1, worker_class="rq.worker.HerokuWorker", EVOQ_TEST_SLEEP="20")
    proc = controller(spec, server.url)
    client = server.client()
    wait_for(lambda: any(isinstance(e, TrialStarted) for _, e in stream_events(client, "dyno")))
    w.horse()
    w.kill(signal.SIGTERM, with_horse=True)  # what Heroku does to every process of a dyno
    pre = wait_for(
        lambda: [e for _, e in stream_events(client, "dyno") if isinstance(e, TrialFailed)], timeout=30
    )
    assert pre[0].kind == "preempted", pre[0]
    workers(1, EVOQ_TEST_SLEEP="0.05")
    code, final, err = finish(proc)
    assert code == 0, err
    events = assert_sound(server, "dyno", final)
    assert [e.attempt for e in events if isinstance(e, TrialSubmitted) and e.trial == pre[0].trial] == [0, 1]


def test_two_experiments_share_one_redis_and_queue_with_local_workers(tmp_path, server, workers):
    a = write_spec(
        tmp_path / "a.toml", "exp-a", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=12
    )
    b = write_spec(
        tmp_path / "b.toml",
        "exp-b",
        "tests.trials:nni_style",
        SPACE,
        population_size=4,
        sample_size=2,
        cycles=12,
        optimize_mode="minimize",
    )
    workers(1)  # a shared worker; exp-a's controller also starts two local ones (--workers)
    pa = controller(a, server.url, "--workers", "2", "--allow", "tests.trials:*")
    pb = controller(b, server.url)
    wait_for(lambda: server.client().exists("evoq:{exp-b}:lease"))
    waiter = controller(b, server.url, "--wait")  # a second controller of exp-b waits for the lease
    code_a, final_a, err = finish(pa)
    assert code_a == 0, err
    code_b, final_b, err = finish(pb)
    assert code_b == 0, err
    code_w, final_w, err = finish(waiter)
    assert code_w == 0, err
    assert final_w["population"] == final_b["population"]  # it found the experiment finished
    events_a = assert_sound(server, "exp-a", final_a)
    events_b = assert_sound(server, "exp-b", final_b)
    assert final_b["best"]["metric"] == min(p["metric"] for p in final_b["population"] + [final_b["best"]])
    workers_a = {e.worker for e in events_a if isinstance(e, TrialStarted)}
    workers_b = {e.worker for e in events_b if isinstance(e, TrialStarted)}
    assert len(workers_a) >= 2 and workers_a & workers_b  # one queue, workers shared


def test_an_experiment_that_ends_cancels_its_queued_jobs_and_stops_running_ones(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "stopper", "tests.trials:fail_or_hang", "x = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]",
        population_size=30, sample_size=5, cycles=60, max_failures=3, dedup=False, seed=7,  # trial 0 hangs
        prefetch=28,  # 2 workers + 28: jobs wait in the queue when the experiment fails
    )  # fmt: skip
    workers(2)
    code, final, err = finish(controller(spec, server.url), timeout=60)
    assert code == 1 and final["status"] == "failed", err
    client = server.client()
    events = [e for _, e in stream_events(client, "stopper")]
    submitted = [(e.trial, e.attempt) for e in events if isinstance(e, TrialSubmitted)]
    assert len(submitted) >= 30  # the prefetch queued them
    from rq.job import Job

    def statuses() -> dict[str, int]:
        seen: dict[str, int] = {}
        for t, a in submitted:
            job = Job.fetch(Keys("stopper").job_id(t, a), connection=client, serializer=SERIALIZER)
            s = job.get_status(refresh=True).value
            seen[s] = seen.get(s, 0) + 1
        return seen

    # queued jobs were cancelled, the hanging ones stopped: none is left running or waiting
    def settled() -> dict[str, int] | None:
        now = statuses()
        return None if {"started", "queued"} & set(now) else now

    ended = wait_for(settled, timeout=20)
    assert ended.get("canceled", 0) >= 20 and ended.get("stopped", 0) >= 1, ended
    finish_at = next(i for i, e in enumerate(events) if isinstance(e, ExperimentFinished))
    late = [e for e in stream_events(client, "stopper")[finish_at + 1 :] if isinstance(e[1], TrialStarted)]
    assert len(late) < 10  # the few taken while the controller was cancelling; not the 26+ queued
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "evoq.cli", "status", "stopper", "--json", "--redis-url", server.url],
            capture_output=True, text=True, timeout=60,
        ).stdout
    )  # fmt: skip
    assert status["running"] == 0 and status["in_flight"] == []


def test_extend_list_and_delete_on_redis(tmp_path, server, workers):
    spec = write_spec(
        tmp_path / "s.toml", "grow", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=8
    )
    workers(2)
    code, final, err = finish(controller(spec, server.url))
    assert code == 0 and final["results"] == 8, err
    code, final, err = finish(controller(spec, server.url, "--cycles", "16"))
    assert code == 0 and final["results"] == 16 and final["cycles"] == 16, err
    assert_sound(server, "grow", final)
    cli = [sys.executable, "-m", "evoq.cli"]
    url = ["--redis-url", server.url]
    listed = json.loads(
        subprocess.run([*cli, "list", "--json", *url], capture_output=True, text=True, cwd=tmp_path).stdout
    )
    (row,) = [r for r in listed if r["name"] == "grow"]
    assert (
        row["where"] == "redis" and row["status"] == "completed" and row["results"] == 16 and row["last_at"]
    )
    client = server.client()
    assert client.exists("rq:job:evoq-grow-0-0")
    deleted = subprocess.run(
        [*cli, "delete", "grow", "--yes", *url], capture_output=True, text=True, cwd=tmp_path
    )
    assert deleted.returncode == 0, deleted.stderr
    assert not client.exists("evoq:{grow}:events") and not client.exists("rq:job:evoq-grow-0-0")
    assert not list(client.scan_iter(match="evoq:{grow}:*")) and b"grow" not in client.smembers(
        "evoq:experiments"
    )
    gone = subprocess.run([*cli, "status", "grow", *url], capture_output=True, text=True, cwd=tmp_path)
    assert gone.returncode == 2 and "no experiment 'grow' in this Redis" in gone.stderr
