#!/usr/bin/env python3
"""System benchmark: evoq on a real redis-server with real ``rq worker`` processes, side by side
with raw RQ and with an NNI-style polling controller.

The script starts its own redis-server (loopback, a free port, data in a temporary directory,
AOF ``everysec`` as in the integration tests) and stops it at the end. It writes a tiny trial
module (``evoq_bench_noop``) into that directory; evoq trials and raw RQ jobs call the same no-op
function, with the same msgpack serializer, in the same class and number of workers.

Measured, in one run:

1. **Throughput.** Raw RQ: ``N`` no-op jobs enqueued with ``enqueue_many`` and drained by the
   workers. evoq: the controller (in a thread of this process) runs an experiment of ``N`` trials.
   ``fed``: ``population_size = prefetch = cycles``, so every trial is an ``init`` trial, all
   are queued at once and the queue is always full (like raw RQ); ``steady p=K``: a small population, then the evolve phase, in which
   the controller keeps at most ``live workers + prefetch`` trials in flight. Completions are
   counted by polling RQ's finished registry (the same probe for both); the rate is taken over
   the window after a warm-up (for ``steady``: after the initial population and a few more).
2. **Reaction time.** From each evolve-phase completion event (``TrialCompleted.at``, set by the
   worker) to the ``TrialSubmitted.at`` (set by the controller) of the next submission (a child or
   a re-evaluation: both are decisions that a result freed), matched
   first-in first-out. Baseline: the same controller, but sleeping 2 s between polls of the log
   instead of ``XREAD BLOCK`` (NNI's strategy loop).
3. **Controller CPU.** ``time.thread_time()`` of the controller thread over its whole run,
   divided by the trials it ran. Redis and worker CPU (``/proc``) per job are shown as well.
4. **Replay.** A realistic log (``scripts/bench_replay.py``'s ``build_log``) stored in a Redis
   Stream and in a file. Redis: raw ``XRANGE`` (batches of 10,000) + ``msgpack.unpackb`` versus
   ``RedisLog`` + ``StateBuilder.add_records`` (``read_records``) and ``Controller.replay``.
   File: a bare frame reader + ``unpackb`` (no hash check) versus ``replay_log(FileLog)``.
5. **Scale.** The throughput figure for 1, 2, 4 and 8 workers, and replay time for logs of
   10k, 100k and 1M events (``--quick``: 10k and 100k).

Targets (reported, not asserted): evoq/raw throughput >= 0.9 per worker class; reaction p50 <=
10 ms and p99 <= 50 ms; replay >= 0.8 of raw XRANGE + decode; controller CPU <= 1 ms per trial.

Writes ``results.json`` and ``results.md`` into ``--out DIR`` and prints, last, one line
``throughput_ratio=... reaction_p50_ms=... replay_ratio=...``; ``throughput_ratio`` is the
smallest, over worker classes, of evoq steady state with ``prefetch = workers`` / raw RQ, and
``reaction_p50_ms`` is that of SimpleWorker at ``prefetch = 0`` (where a worker waits for it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import redis
from rq import Queue

from evoq.codec import decode
from evoq.controller import Controller, ControllerOptions
from evoq.events import ExperimentCreated, TrialCompleted, TrialFailed, TrialStarted, TrialSubmitted
from evoq.filelog import FileLog
from evoq.keys import STREAM_FIELD, Keys
from evoq.log import read_records, replay_log
from evoq.redislog import RedisLog
from evoq.reducer import StateBuilder
from evoq.spec import Spec, parse_spec
from evoq.testing import LocalRedis
from workers.launch import worker_command

ROOT = Path(__file__).resolve().parent.parent
SERIALIZER = "workers.serializer.MsgpackSerializer"
NOOP_MODULE = "evoq_bench_noop"
NOOP_SOURCE = '''"""A no-op trial for scripts/bench_system.py (generated)."""


def noop(config):
    return float(sum(config.values()))
'''
SPACE: dict[str, Any] = {f"x{i}": list(range(10)) for i in range(8)}
WORKER_CLASSES = {"SimpleWorker": "rq.worker.SimpleWorker", "Worker": "rq.worker.Worker"}
NNI_POLL_S = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ----------------------------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    """CPU seconds of a process and its reaped children (utime + stime + cutime + cstime)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = text.rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


class RedisServer(LocalRedis):
    """The benchmark's redis-server (see :class:`evoq.testing.LocalRedis`), with its CPU time."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, binary=shutil.which("redis-server") or "/usr/bin/redis-server")

    def cpu(self) -> float:
        """CPU seconds used by redis-server so far."""
        assert self.proc is not None
        return proc_cpu(self.proc.pid)


class WorkerPool:
    """``n`` real ``rq worker`` processes on one queue, as ``evoq worker`` starts them.

    ``evoq_jobs=False`` drops ``--job-class workers.job.EvoqJob`` (it refuses every function but
    evoq's trial entry) so that the raw RQ baseline can call the no-op function directly.
    """

    def __init__(
        self,
        server: RedisServer,
        queue: str,
        n: int,
        worker_class: str,
        *,
        evoq_jobs: bool,
        env: dict[str, str],
    ) -> None:
        self.server, self.queue, self.n = server, queue, n
        self.procs: list[subprocess.Popen[bytes]] = []
        stamp = time.monotonic_ns()
        for i in range(n):
            cmd = worker_command(
                server.url, (queue,), worker_class=worker_class, monitoring=5, name=f"{queue}-{i}-{stamp}"
            )
            argv = cmd.argv
            if not evoq_jobs:
                j = argv.index("--job-class")
                del argv[j : j + 2]
            self.procs.append(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=cmd.full_env(env),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        client = server.client()
        deadline = time.monotonic() + 60
        while int(client.scard(f"rq:workers:{queue}")) < n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"{n} rq workers on {queue!r} did not start")
            time.sleep(0.02)
        time.sleep(0.3)  # registered, now let them reach their blocking dequeue

    def cpu(self) -> float:
        """CPU seconds used by the worker processes (work horses included once reaped)."""
        return sum(proc_cpu(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextmanager
def workers(
    server: RedisServer, queue: str, n: int, worker_class: str, *, evoq_jobs: bool, env: dict[str, str]
) -> Iterator[WorkerPool]:
    pool = WorkerPool(server, queue, n, worker_class, evoq_jobs=evoq_jobs, env=env)
    try:
        yield pool
    finally:
        pool.stop()


# -- throughput ---------------------------------------------------------------------------------
def finished_count(client: redis.Redis, queue: str) -> int:
    """Jobs in RQ's finished registry of ``queue``."""
    return int(client.zcard(f"rq:finished:{queue}"))


def wait_completions(
    client: redis.Redis,
    queue: str,
    total: int,
    timeout: float,
    done: Callable[[], bool] | None = None,
    base_count: int | None = None,
) -> list[tuple[float, int]]:
    """Poll RQ's finished registry of ``queue`` every 10 ms until ``total`` more jobs than
    ``base_count`` (default: the first count seen) finished; return ``(monotonic time, count)``
    samples (counts relative to the base). A failed job is an error."""
    finished, failed = f"rq:finished:{queue}", f"rq:failed:{queue}"
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    base = -1
    while True:
        with client.pipeline(transaction=False) as pipe:
            pipe.zcard(finished)
            pipe.zcard(failed)
            n, bad = pipe.execute()
        if base < 0:
            base = int(n) if base_count is None else base_count
        n = int(n) - base
        samples.append((time.monotonic(), n))
        if bad:
            raise RuntimeError(f"{bad} job(s) failed on queue {queue!r}")
        if n >= total:
            return samples
        now = time.monotonic()
        if done is not None and done():  # the last jobs are being marked finished: a short grace
            deadline, done = min(deadline, now + 10), None
        if now > deadline:
            raise RuntimeError(f"only {n}/{total} jobs finished on {queue!r} in time")
        time.sleep(0.01)


def window_rate(samples: Sequence[tuple[float, int]], lo: int, hi: int) -> float:
    """Jobs per second between the first samples reaching ``lo`` and ``hi`` completions."""
    t_lo = next(((t, c) for t, c in samples if c >= lo), None)
    t_hi = next(((t, c) for t, c in samples if c >= hi), None)
    if t_lo is None or t_hi is None:
        return math.nan
    dt = t_hi[0] - t_lo[0]
    return (t_hi[1] - t_lo[1]) / dt if dt > 0 else math.nan


def run_raw(server: RedisServer, pool: WorkerPool, n_jobs: int) -> dict[str, Any]:
    """Enqueue ``n_jobs`` no-op jobs straight into RQ and time their draining."""
    client = server.client()
    q = Queue(pool.queue, connection=client, serializer=SERIALIZER)
    config = {k: 1 for k in SPACE}
    base = finished_count(client, pool.queue)
    cpu_r, cpu_w = server.cpu(), pool.cpu()
    t0 = time.monotonic()
    for start in range(0, n_jobs, 500):
        datas = [
            Queue.prepare_data(
                f"{NOOP_MODULE}.noop", args=(config,), timeout=-1, result_ttl=600, description="raw noop"
            )
            for _ in range(start, min(n_jobs, start + 500))
        ]
        q.enqueue_many(datas)
    enqueued = time.monotonic() - t0
    samples = wait_completions(client, pool.queue, n_jobs, timeout=600, base_count=base)
    warm = max(1, n_jobs // 20)
    rate = window_rate(samples, warm, n_jobs)
    return {
        "jobs": n_jobs,
        "jobs_per_s": rate,
        "enqueue_s": enqueued,
        "wall_s": samples[-1][0] - t0,
        "redis_cpu_ms_per_job": (server.cpu() - cpu_r) * 1000 / n_jobs,
        "worker_cpu_ms_per_job": (pool.cpu() - cpu_w) * 1000 / n_jobs,
    }


class PollingController(Controller):
    """NNI's strategy loop: propose, then sleep ``poll`` seconds and read what arrived."""

    poll = NNI_POLL_S

    def await_events(self) -> None:
        """Instead of blocking on the stream: sleep a fixed interval, then read what arrived."""
        self.stop_event.wait(self.poll)
        self.catch_up()


def make_spec(name: str, population: int, sample: int, cycles: int, prefetch: int) -> Spec:
    return parse_spec(
        {
            "name": name,
            "trial": f"{NOOP_MODULE}:noop",
            "seed": 1,
            "strategy": {
                "population_size": population,
                "sample_size": sample,
                "cycles": cycles,
                "prefetch": prefetch,
                "max_failures": 10**6,
            },
            "space": SPACE,
        }
    )


def run_evoq(
    server: RedisServer,
    pool: WorkerPool,
    name: str,
    *,
    population: int,
    cycles: int,
    prefetch: int,
    controller_class: type[Controller] = Controller,
) -> dict[str, Any]:
    """Run one experiment of ``cycles`` no-op trials with the controller in a thread."""
    spec = make_spec(name, population, min(5, population - 1), cycles, prefetch)
    client = server.client()
    ctl = controller_class(client, spec.created(), ControllerOptions(queue=pool.queue, heartbeat_ttl=10.0))
    out: dict[str, Any] = {}

    def target() -> None:
        c0 = time.thread_time()
        try:
            state = ctl.run()
            out["status"] = state.status
        except BaseException as exc:  # reported by the main thread
            out["error"] = exc
        out["cpu_s"] = time.thread_time() - c0

    base = finished_count(client, pool.queue)
    cpu_r, cpu_w = server.cpu(), pool.cpu()
    thread = threading.Thread(target=target, name=f"controller-{name}", daemon=True)
    t0 = time.monotonic()
    thread.start()
    try:
        samples = wait_completions(
            server.client(),
            pool.queue,
            cycles,
            timeout=600,
            done=lambda: not thread.is_alive(),
            base_count=base,
        )
    finally:
        thread.join(timeout=30)
        if thread.is_alive():
            ctl.stop()
            thread.join(timeout=30)
    if "error" in out:
        raise RuntimeError(f"controller failed: {out['error']!r}")
    wall = time.monotonic() - t0
    fed = population >= cycles
    evolve = cycles - population
    warm = max(1, cycles // 20) if fed else population + min(max(10, evolve // 20), evolve // 4)
    events = [decode(d) for _, d in RedisLog(client, Keys(name)).read()]
    result: dict[str, Any] = {
        "trials": cycles,
        "population": population,
        "prefetch": prefetch,
        "status": out.get("status"),
        "trials_per_s": window_rate(samples, warm, cycles),
        "wall_s": wall,
        "controller_cpu_ms_per_trial": out["cpu_s"] * 1000 / cycles,
        "redis_cpu_ms_per_job": (server.cpu() - cpu_r) * 1000 / cycles,
        "worker_cpu_ms_per_job": (pool.cpu() - cpu_w) * 1000 / cycles,
        "events": len(events),
    }
    if not fed:
        result.update(reaction_stats(events, population))
    return result


def reaction_stats(events: Sequence[Any], population: int) -> dict[str, Any]:
    """Completion -> next submission latencies (FIFO) in the evolve phase (children and
    re-evaluations alike: both are decisions a result freed), and worker idle gaps."""
    pending: deque[float] = deque()
    reactions: list[float] = []
    last_end: dict[str, float] = {}
    gaps: list[float] = []
    for e in events:
        if isinstance(e, (TrialCompleted, TrialFailed)):
            if e.trial >= population:
                pending.append(e.at)
                last_end[e.worker] = e.at
        elif isinstance(e, TrialSubmitted) and e.phase != "init" and pending:  # a child or a re-evaluation
            reactions.append(e.at - pending.popleft())
        elif isinstance(e, TrialStarted) and e.worker in last_end:
            gaps.append(e.at - last_end.pop(e.worker))
    return {
        "reactions": len(reactions),
        "reaction_p50_ms": quantile(reactions, 0.5) * 1000,
        "reaction_p99_ms": quantile(reactions, 0.99) * 1000,
        "idle_gap_p50_ms": quantile(gaps, 0.5) * 1000,
        "idle_gap_p99_ms": quantile(gaps, 0.99) * 1000,
    }


def quantile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``xs``; nan when empty."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


# -- replay -------------------------------------------------------------------------------------
def build_file_log(path: Path, n_events: int) -> int:
    """A realistic log of about ``n_events`` (evoq's proposals, 20% failures, 8 in flight)."""
    scripts = str(Path(__file__).resolve().parent)
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    from bench_replay import build_log

    count: int = build_log(path, n_events)
    return count


def load_stream(client: redis.Redis, path: Path, name: str) -> int:
    """XADD every record of a file log into experiment ``name``'s stream (pipelined)."""
    stream = Keys(name).stream
    client.delete(stream)
    n = 0
    batch: list[bytes] = []

    def flush() -> None:
        with client.pipeline(transaction=False) as pipe:
            for r in batch:
                pipe.xadd(stream, {STREAM_FIELD: r})
            pipe.execute()
        batch.clear()

    for _, data in FileLog(path).read():
        batch.append(data)
        n += 1
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    return n


def raw_redis(client: redis.Redis, name: str) -> int:
    """XRANGE the whole stream in batches of 10,000 and msgpack-unpack each record."""
    stream, unpackb, n, start = Keys(name).stream, msgpack.unpackb, 0, "-"
    while True:
        entries: Any = client.xrange(stream, min=start, max="+", count=10_000)
        for _, fields in entries:
            unpackb(fields[STREAM_FIELD], raw=False, use_list=False, strict_map_key=True)
        n += len(entries)
        if len(entries) < 10_000:
            return n
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))


def replay_redis(client: redis.Redis, name: str) -> int:
    """What ``evoq replay``/``status`` do: RedisLog -> read_records -> StateBuilder."""
    b = StateBuilder()
    b.add_records(read_records(RedisLog(client, Keys(name))))
    return b.events


def replay_controller(client: redis.Redis, name: str, created: Any) -> int:
    """What a starting controller does: ``Controller.replay()``."""
    ctl = Controller(client, created)
    ctl.replay()
    return ctl.state.events


def raw_file(path: Path) -> int:
    """Read the file in one go, walk its frames (no hash check) and msgpack-unpack each."""
    data = path.read_bytes()
    header = struct.Struct(">I16s")
    unpackb, unpack_from, hsize = msgpack.unpackb, header.unpack_from, header.size
    i, n, end = 8, 0, len(data)
    while i < end:
        size = unpack_from(data, i)[0]
        unpackb(data[i + hsize : i + hsize + size], raw=False, use_list=False, strict_map_key=True)
        i += hsize + size
        n += 1
    return n


def filelog_unpack(path: Path) -> int:
    """FileLog.read (chain checked) + msgpack-unpack, no fold."""
    return sum(1 for _ in read_records(FileLog(path)))


def replay_file(path: Path) -> int:
    """``replay_log(FileLog)``: read, check the chain, unpack, validate, fold."""
    return replay_log(FileLog(path)).events


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    gc.collect()
    t0 = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0


def bench_replay(
    server: RedisServer, tmp: Path, sizes: Sequence[int], repeat: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Replay figures for each log size (medians of ``repeat`` rounds, modes interleaved)."""
    client = server.client()
    results: dict[str, Any] = {}
    for size in sizes:
        path = tmp / f"replay-{size}.evoqlog"
        t0 = time.perf_counter()
        count = build_file_log(path, size)
        name = f"replay{size}"
        load_stream(client, path, name)
        created = next(iter(FileLog(path).read()))[1]
        first = decode(created)
        assert isinstance(first, ExperimentCreated)
        created_event = dataclasses.replace(first, name=name)
        log(f"replay: built and loaded {count} events in {time.perf_counter() - t0:.1f}s")
        modes: dict[str, Callable[[], int]] = {
            "redis_raw": functools.partial(raw_redis, client, name),
            "redis_replay": functools.partial(replay_redis, client, name),
            "redis_controller_replay": functools.partial(replay_controller, client, name, created_event),
            "file_raw": functools.partial(raw_file, path),
            "file_read_unpack": functools.partial(filelog_unpack, path),
            "file_replay": functools.partial(replay_file, path),
        }
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(repeat):
            for mode, fn in modes.items():
                n, dt = timed(fn)
                if n != count:
                    raise RuntimeError(f"{mode} saw {n} events, expected {count}")
                times[mode].append(dt)
        med = {m: statistics.median(v) for m, v in times.items()}
        results[str(size)] = {
            "events": count,
            "seconds": med,
            "events_per_s": {m: count / s for m, s in med.items()},
            "redis_ratio": med["redis_raw"] / med["redis_replay"],
            "redis_controller_ratio": med["redis_raw"] / med["redis_controller_replay"],
            "file_ratio": med["file_raw"] / med["file_replay"],
            "file_ratio_vs_filelog_unpack": med["file_read_unpack"] / med["file_replay"],
        }
        log(
            f"replay {count}: redis {count / med['redis_replay']:.0f}/s vs raw {count / med['redis_raw']:.0f}/s;"
            f" file {count / med['file_replay']:.0f}/s vs raw {count / med['file_raw']:.0f}/s"
        )
        client.delete(Keys(name).stream)
        path.unlink()
    return results


# -- the run ------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How much of everything to measure."""

    jobs: dict[str, int]
    population: int
    prefetch: list[int]
    scale_workers: list[int]
    scale_classes: list[str]
    scale_jobs: dict[str, int]
    nni_trials: int
    replay_sizes: list[int]
    repeat: int
    workers: int = 2
    notes: list[str] = field(default_factory=list)


def plan_for(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(
            jobs={"SimpleWorker": 400, "Worker": 120},
            population=10,
            prefetch=[0, 2],
            scale_workers=[1, 2, 4, 8],
            scale_classes=["SimpleWorker"],
            scale_jobs={"SimpleWorker": 240, "Worker": 80},
            nni_trials=6,
            replay_sizes=[10_000, 100_000],
            repeat=1,
        )
    return Plan(
        jobs={"SimpleWorker": 2000, "Worker": 500},
        population=20,
        prefetch=[0, 1, 2, 4],
        scale_workers=[1, 2, 4, 8],
        scale_classes=["SimpleWorker", "Worker"],
        scale_jobs={"SimpleWorker": 1000, "Worker": 300},
        nni_trials=20,
        replay_sizes=[10_000, 100_000, 1_000_000],
        repeat=3,
    )


def worker_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp), str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["EVOQ_ALLOW"] = f"{NOOP_MODULE}:*"
    return env


def throughput_block(
    server: RedisServer,
    env: dict[str, str],
    cls: str,
    n_workers: int,
    n_jobs: int,
    population: int,
    prefetch: Sequence[int],
    *,
    fed: bool,
    tag: str,
) -> dict[str, Any]:
    """Raw RQ, then evoq (fed and/or steady at each prefetch), same class and number of workers."""
    wc = WORKER_CLASSES[cls]
    out: dict[str, Any] = {"class": cls, "workers": n_workers}
    with workers(server, f"raw-{tag}", n_workers, wc, evoq_jobs=False, env=env) as pool:
        out["raw"] = run_raw(server, pool, n_jobs)
    with workers(server, f"evoq-{tag}", n_workers, wc, evoq_jobs=True, env=env) as pool:
        if fed:
            out["evoq_fed"] = run_evoq(
                server, pool, f"fed-{tag}", population=n_jobs, cycles=n_jobs, prefetch=n_jobs
            )
        for p in prefetch:
            out[f"evoq_p{p}"] = run_evoq(
                server, pool, f"st-{tag}-p{p}", population=population, cycles=n_jobs + population, prefetch=p
            )
    raw = out["raw"]["jobs_per_s"]
    out["ratios"] = {k: v["trials_per_s"] / raw for k, v in out.items() if k.startswith("evoq_")}
    return out


def fmt(x: Any, digits: int = 1) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.{digits}f}"
    return str(x)


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# evoq system benchmark ({'quick' if res['quick'] else 'full'})", ""]
    lines += [
        f"{res['machine']}; redis-server {res['redis_version']}, rq {res['rq_version']}, "
        f"redis-py {res['redis_py_version']} (hiredis {res['hiredis']}). Total {res['total_s']:.0f} s.",
        "",
        "## 1. Throughput, no-op trials, 2 workers (jobs/s over the steady window; ratio = evoq / raw RQ)",
        "",
        "| workers | evoq mode | evoq trials/s | raw RQ jobs/s | ratio | reaction p50 / p99 ms | worker idle gap p50 / p99 ms | controller CPU ms/trial | redis CPU ms/job (evoq / raw) | worker CPU ms/job (evoq / raw) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for blk in res["throughput"]:
        raw = blk["raw"]
        for k, v in blk.items():
            if not k.startswith("evoq_"):
                continue
            mode = "fed (P = prefetch = cycles)" if k == "evoq_fed" else f"steady, prefetch={v['prefetch']}"
            react = (
                f"{fmt(v['reaction_p50_ms'])} / {fmt(v['reaction_p99_ms'])}"
                if "reaction_p50_ms" in v
                else "-"
            )
            gap = (
                f"{fmt(v['idle_gap_p50_ms'])} / {fmt(v['idle_gap_p99_ms'])}"
                if "idle_gap_p50_ms" in v
                else "-"
            )
            lines.append(
                f"| {blk['workers']} x {blk['class']} | {mode} | {fmt(v['trials_per_s'])} | {fmt(raw['jobs_per_s'])} "
                f"| {fmt(blk['ratios'][k], 2)} | {react} | {gap} | {fmt(v['controller_cpu_ms_per_trial'], 3)} "
                f"| {fmt(v['redis_cpu_ms_per_job'], 2)} / {fmt(raw['redis_cpu_ms_per_job'], 2)} "
                f"| {fmt(v['worker_cpu_ms_per_job'], 2)} / {fmt(raw['worker_cpu_ms_per_job'], 2)} |"
            )
    nni = res["nni_baseline"]
    lines += [
        "",
        f"## 2. Reaction time (completion -> next submission), {nni['workers']} x {nni['class']}",
        "",
        "| controller | reactions | p50 ms | p99 ms | trials/s |",
        "|---|---|---|---|---|",
    ]
    for label, v in res["reaction_rows"]:
        lines.append(
            f"| {label} | {v['reactions']} | {fmt(v['reaction_p50_ms'])} | {fmt(v['reaction_p99_ms'])} "
            f"| {fmt(v['trials_per_s'])} |"
        )
    lines += [
        "",
        "## 3./5. Scale: throughput vs workers (evoq steady, prefetch = workers)",
        "",
        "| class | workers | evoq trials/s | raw RQ jobs/s | ratio | controller CPU ms/trial | reaction p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for blk in res["scale"]:
        k = next(k for k in blk if k.startswith("evoq_"))
        v = blk[k]
        lines.append(
            f"| {blk['class']} | {blk['workers']} | {fmt(v['trials_per_s'])} | {fmt(blk['raw']['jobs_per_s'])} "
            f"| {fmt(blk['ratios'][k], 2)} | {fmt(v['controller_cpu_ms_per_trial'], 3)} | {fmt(v['reaction_p50_ms'])} |"
        )
    lines += [
        "",
        "## 4./5. Replay (events/s, medians; ratio = replay / raw)",
        "",
        "| events | XRANGE+unpack | RedisLog replay | ratio | Controller.replay | ratio | file raw frames+unpack | FileLog read+unpack | file replay | ratio vs raw | ratio vs FileLog+unpack | redis replay s | file replay s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, v in sorted(res["replay"].items(), key=lambda kv: int(kv[0])):
        e, s = v["events_per_s"], v["seconds"]
        lines.append(
            f"| {v['events']} | {e['redis_raw']:.0f} | {e['redis_replay']:.0f} | {v['redis_ratio']:.2f} "
            f"| {e['redis_controller_replay']:.0f} | {v['redis_controller_ratio']:.2f} | {e['file_raw']:.0f} "
            f"| {e['file_read_unpack']:.0f} | {e['file_replay']:.0f} | {v['file_ratio']:.2f} "
            f"| {v['file_ratio_vs_filelog_unpack']:.2f} | {s['redis_replay']:.3f} | {s['file_replay']:.3f} |"
        )
    lin = res.get("replay_linearity")
    if lin:
        lines += ["", f"Replay time per event, largest / smallest log: {lin}"]
    lines += ["", "## Targets", "", "| target | value | met |", "|---|---|---|"]
    for t in res["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'NO'} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for results.json and results.md")
    ap.add_argument("--quick", action="store_true", help="smaller run (under 2 minutes)")
    ap.add_argument(
        "--only",
        default="throughput,reaction,scale,replay",
        help="comma-separated parts to run (default: all)",
    )
    args = ap.parse_args()
    parts = set(args.only.split(","))
    plan = plan_for(args)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    import rq

    res: dict[str, Any] = {
        "quick": args.quick,
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "rq_version": rq.__version__,
        "redis_py_version": redis.__version__,
        "hiredis": bool(getattr(redis.utils, "HIREDIS_AVAILABLE", False)),
        "plan": plan.__dict__,
        "throughput": [],
        "scale": [],
        "replay": {},
        "reaction_rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="evoq-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / f"{NOOP_MODULE}.py").write_text(NOOP_SOURCE)
        env = worker_env(tmp)
        server = RedisServer(tmp)
        try:
            res["redis_version"] = server.client().info("server")["redis_version"]
            n = plan.workers
            if "throughput" in parts:
                for cls in WORKER_CLASSES:
                    blk = throughput_block(
                        server,
                        env,
                        cls,
                        n,
                        plan.jobs[cls],
                        plan.population,
                        plan.prefetch,
                        fed=True,
                        tag=f"{cls}-{n}",
                    )
                    res["throughput"].append(blk)
                    log(
                        f"{cls} x{n}: raw {blk['raw']['jobs_per_s']:.1f}/s; "
                        + ", ".join(
                            f"{k} {v['trials_per_s']:.1f}/s" for k, v in blk.items() if k.startswith("evoq_")
                        )
                    )
            cls = "SimpleWorker"
            nni: dict[str, Any] = {"class": cls, "workers": n}
            if "reaction" in parts:
                with workers(server, "evoq-nni", n, WORKER_CLASSES[cls], evoq_jobs=True, env=env) as pool:
                    nni.update(
                        run_evoq(
                            server,
                            pool,
                            "nni-poll",
                            population=plan.population,
                            cycles=plan.population + plan.nni_trials,
                            prefetch=0,
                            controller_class=PollingController,
                        )
                    )
                log(f"NNI-style polling: reaction p50 {nni['reaction_p50_ms']:.0f} ms")
            res["nni_baseline"] = nni
            for blk in res["throughput"]:
                if blk["class"] == cls and "evoq_p0" in blk:
                    res["reaction_rows"].append(("evoq, XREAD BLOCK, prefetch=0", blk["evoq_p0"]))
                if blk["class"] == cls and f"evoq_p{n}" in blk:
                    res["reaction_rows"].append((f"evoq, XREAD BLOCK, prefetch={n}", blk[f"evoq_p{n}"]))
            if "reactions" in nni:
                res["reaction_rows"].append((f"NNI-style: sleep {NNI_POLL_S:g} s between polls", nni))
            if "scale" in parts:
                for cls in plan.scale_classes:
                    for k in plan.scale_workers:
                        blk = throughput_block(
                            server,
                            env,
                            cls,
                            k,
                            plan.scale_jobs[cls],
                            plan.population,
                            [k],
                            fed=False,
                            tag=f"scale-{cls}-{k}",
                        )
                        res["scale"].append(blk)
                        log(f"scale {cls} x{k}: ratio {blk['ratios'][f'evoq_p{k}']:.2f}")
            if "replay" in parts:
                res["replay"] = bench_replay(server, tmp, plan.replay_sizes, plan.repeat, log)
        finally:
            server.stop()
    finish(res, args.out, time.monotonic() - t_start)


def finish(res: dict[str, Any], out: Path, total: float) -> None:
    res["total_s"] = total
    n = res["plan"]["workers"]
    ratios = [blk["ratios"].get(f"evoq_p{n}", math.nan) for blk in res["throughput"]]
    throughput_ratio = min(ratios) if ratios else math.nan
    simple = next((b for b in res["throughput"] if b["class"] == "SimpleWorker"), None)
    p0 = simple.get("evoq_p0", {}) if simple else {}
    reaction_p50 = p0.get("reaction_p50_ms", math.nan)
    reaction_p99 = p0.get("reaction_p99_ms", math.nan)
    largest = max(res["replay"], key=int) if res["replay"] else None
    replay_ratio = res["replay"][largest]["redis_ratio"] if largest else math.nan
    cpu = [
        v["controller_cpu_ms_per_trial"]
        for b in res["throughput"]
        for k, v in b.items()
        if k.startswith("evoq_p")
    ]
    cpu_max = max(cpu) if cpu else math.nan
    if largest and len(res["replay"]) > 1:
        smallest = min(res["replay"], key=int)
        per = {
            m: (res["replay"][largest]["seconds"][m] / int(largest))
            / (res["replay"][smallest]["seconds"][m] / int(smallest))
            for m in ("redis_replay", "file_replay")
        }
        res["replay_linearity"] = ", ".join(f"{m} {v:.2f}x" for m, v in per.items()) + " (1.00 = linear)"
    targets = [
        *(
            {
                "target": f"throughput evoq/raw >= 0.9, {b['class']} (prefetch={n})",
                "value": round(b["ratios"].get(f"evoq_p{n}", math.nan), 3),
                "met": b["ratios"].get(f"evoq_p{n}", 0) >= 0.9,
            }
            for b in res["throughput"]
        ),
        {"target": "reaction p50 <= 10 ms", "value": round(reaction_p50, 2), "met": reaction_p50 <= 10},
        {"target": "reaction p99 <= 50 ms", "value": round(reaction_p99, 2), "met": reaction_p99 <= 50},
        {
            "target": "replay >= 0.8 of XRANGE+unpack",
            "value": round(replay_ratio, 3),
            "met": replay_ratio >= 0.8,
        },
        {
            "target": "controller CPU <= 1 ms/trial (worst steady run)",
            "value": round(cpu_max, 3),
            "met": cpu_max <= 1,
        },
    ]
    res["targets"] = targets
    res["summary"] = (
        f"throughput_ratio={throughput_ratio:.3f} reaction_p50_ms={reaction_p50:.2f} replay_ratio={replay_ratio:.3f}"
    )
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    text = markdown(res)
    (out / "results.md").write_text(text + "\n" + res["summary"] + "\n")
    print(text)
    print(res["summary"])


if __name__ == "__main__":
    main()
