#!/usr/bin/env python3
"""Scale: hundreds to a thousand workers and several experiments on one Redis, measured.

One real redis-server (a free loopback port, a temporary directory). ``N`` simulated workers run
in one asyncio process, each with its own Redis connection named after it, doing on the wire
what an ``rq worker`` running evoq's trial entry does: register in RQ's worker sets, take a job
off the queue (BLMOVE into RQ's intermediate list), move it through RQ's registries (started,
finished), append ``TrialStarted``/``TrialCompleted`` to the experiment's stream, keep the run's
heartbeat key alive while the trial "trains" for its duration, and report a metric derived from
the config. ``E`` experiments share the queue, each run by a real evoq controller in its own
process (so that its CPU and memory are its own), for a measured window after warm-up.

Reported per scenario (one row each):

* controller CPU per decision (ms) and per second (% of a core), summed over the controllers;
* Redis CPU (``INFO cpu``) in % of a core, and ``used_memory`` at warm-up end and at the end,
  without the streams (``MEMORY USAGE``) and the client buffers (``mem_clients_normal``), which
  are shown apart; the simulated workers clean rq's finished registry every 10 s as an rq
  worker's maintenance does (every 600 s in rq);
* reaction time p50/p99: from a completion (its ``at``) to the next submission of that
  experiment (matched first in, first out), once the first child is submitted;
* population fill wait: seconds from the last initial trial's submission to the first child's,
  the longest over the experiments (as in NNI, children wait for all ``P`` initial results; the
  workers an experiment owns may idle up to one trial meanwhile, unless re-evaluations use them);
* commit conflicts (WATCH aborts and stale tails) per submission;
* submissions per second;
* capacity: the largest number of runs an experiment had in flight, against its fair share of
  the workers (+ prefetch), sampled every second by the controller itself;
* controller RSS (MiB).

    python scripts/bench_scale.py --workers 100 300 1000 --experiments 1 4 --seconds 60
    python scripts/bench_scale.py --quick

Prints a Markdown table, and writes it with the raw numbers as JSON with ``--out DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import msgpack
import redis
import redis.asyncio as aredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoq.codec import decode, encode
from evoq.events import TrialCompleted, TrialStarted, TrialSubmitted
from evoq.keys import STREAM_FIELD, Keys
from evoq.testing import LocalRedis

QUEUE = "evoq"
MAINTENANCE_S = 10.0
"""How often the simulated workers clean rq's finished registry (rq: every 600 s; shorter here so
that memory reaches its plateau inside the window; the plateau scales with the interval)."""
SPACE = {f"p{i}": list(range(10)) for i in range(6)}


# -- simulated workers ---------------------------------------------------------------------------
def metric_of(config: dict[str, Any]) -> float:
    return (zlib.crc32(json.dumps(config, sort_keys=True).encode()) % 10_000) / 10_000


class SimWorker:
    """One worker: an asyncio task with its own named connection."""

    def __init__(self, url: str, name: str, trial_s: tuple[float, float], rng: random.Random) -> None:
        self.url, self.name, self.trial_s, self.rng = url, name, trial_s, rng
        self.key = f"rq:worker:{name}"
        self.done = 0

    async def run(self, stop: asyncio.Event) -> None:
        r = aredis.Redis.from_url(self.url, single_connection_client=True, client_name=self.name)
        try:
            await r.sadd("rq:workers", self.key)
            await r.sadd(f"rq:workers:{QUEUE}", self.key)
            await r.hset(self.key, mapping={"birth": time.time(), "state": "idle", "queues": QUEUE})
            while not stop.is_set():
                job_id = await r.blmove(f"rq:queue:{QUEUE}", f"rq:intermediate:{QUEUE}", 1, "LEFT", "RIGHT")
                if job_id is None:
                    continue
                await self.perform(r, job_id.decode() if isinstance(job_id, bytes) else str(job_id), stop)
        except (redis.ConnectionError, asyncio.CancelledError):
            pass
        finally:
            await r.aclose()

    async def perform(self, r: Any, job_id: str, stop: asyncio.Event) -> None:
        job_key = f"rq:job:{job_id}"
        data, result_ttl = await r.hmget(job_key, ["data", "result_ttl"])
        if data is None:
            await r.lrem(f"rq:intermediate:{QUEUE}", 1, job_id)
            return
        _fn, _instance, args, _kwargs = msgpack.unpackb(zlib.decompress(data), raw=False)
        payload = args[0]
        keys = Keys(payload["experiment"])
        trial, attempt = payload["trial"], payload["attempt"]
        ttl = float(payload["heartbeat_ttl"])
        now = time.time()
        pipe = r.pipeline(transaction=True)
        pipe.hset(job_key, mapping={"status": "started", "worker_name": self.name, "started_at": str(now)})
        pipe.zadd(f"rq:wip:{QUEUE}", {job_id: now + 3600})
        pipe.lrem(f"rq:intermediate:{QUEUE}", 1, job_id)
        pipe.hset(self.key, mapping={"state": "busy", "current_job": job_id})
        pipe.xadd(keys.stream, {STREAM_FIELD: encode(TrialStarted(trial, attempt, self.name, now))})
        pipe.set(keys.heartbeat(trial, attempt), self.name, px=int(ttl * 1000))
        await pipe.execute()
        duration = self.rng.uniform(*self.trial_s)
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0 and not stop.is_set():
            await asyncio.sleep(min(left, ttl / 4))
            await r.set(keys.heartbeat(trial, attempt), self.name, px=int(ttl * 1000))
        if stop.is_set():
            return
        metric = metric_of(payload["config"])
        pipe = r.pipeline(transaction=True)
        pipe.xadd(
            keys.stream,
            {STREAM_FIELD: encode(TrialCompleted(trial, attempt, metric, duration, self.name, time.time()))},
        )
        pipe.delete(keys.heartbeat(trial, attempt))
        pipe.hset(job_key, mapping={"status": "finished", "ended_at": str(time.time())})
        pipe.zrem(f"rq:wip:{QUEUE}", job_id)
        keep = int(result_ttl) if result_ttl is not None else 500  # as rq: the job's TTL, else 500 s
        pipe.zadd(f"rq:finished:{QUEUE}", {job_id: time.time() + keep})
        pipe.expire(job_key, keep)
        pipe.hset(self.key, mapping={"state": "idle", "current_job": ""})
        await pipe.execute()
        self.done += 1


async def maintenance(url: str, stop: asyncio.Event, every: float = MAINTENANCE_S) -> None:
    """What an rq worker's maintenance does for the registries the simulated workers fill: drop
    the finished registry's entries whose result expired (rq runs it every 10 minutes)."""
    r = aredis.Redis.from_url(url, single_connection_client=True, client_name="sim-maintenance")
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except TimeoutError:
                await r.zremrangebyscore(f"rq:finished:{QUEUE}", 0, time.time())
    finally:
        await r.aclose()


def run_workers(url: str, n: int, trial_s: tuple[float, float], seconds: float, seed: int) -> dict[str, Any]:
    """Run ``n`` simulated workers for ``seconds``; return their process CPU and trial count."""

    async def main() -> int:
        stop = asyncio.Event()
        rng = random.Random(seed)
        workers = [SimWorker(url, f"sim{i}-{seed}", trial_s, random.Random(rng.random())) for i in range(n)]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        tasks.append(asyncio.create_task(maintenance(url, stop)))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=10)
        return sum(w.done for w in workers)

    t0 = time.process_time()
    done = asyncio.run(main())
    return {"trials": done, "cpu_s": time.process_time() - t0}


# -- one controller per process ------------------------------------------------------------------
def controller_main(url: str, name: str, seconds: float, prefetch: int, result_ttl: int, out: Path) -> None:
    """Run one experiment's controller for ``seconds``; write its samples and totals to ``out``."""
    from evoq.controller import Controller, ControllerOptions
    from evoq.spec import parse_spec

    spec = parse_spec(
        {"name": name, "trial": "bench.sim:trial", "seed": 1, "space": SPACE,
         "strategy": {"population_size": 100, "sample_size": 25, "cycles": 10**7, "prefetch": prefetch}}
    )  # fmt: skip
    client = redis.Redis.from_url(url)
    ctl = Controller(
        client, spec.created(), ControllerOptions(queue=QUEUE, heartbeat_ttl=10.0, result_ttl=result_ttl)
    )
    samples: list[dict[str, Any]] = []
    submissions = [0]

    def sample() -> None:
        while not ctl.stop_event.wait(1.0):
            st = ctl.state
            samples.append({"t": time.time(), "in_flight": len(st.running), "population": len(st.population),
                            "capacity": ctl.capacity_now() if hasattr(ctl, "capacity_now") else None})  # fmt: skip

    threading.Thread(target=sample, daemon=True).start()
    slow: list[tuple[str, float]] = []
    if os.environ.get("EVOQ_BENCH_TIMINGS"):
        for method in (
            "check_runs",
            "submit_ready",
            "await_events",
            "finish_if_due",
            "verify_log",
            "catch_up",
        ):
            inner = getattr(ctl, method)

            def timed(*a: Any, _inner: Any = inner, _name: str = method, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return _inner(*a, **k)
                finally:
                    dt = time.perf_counter() - t
                    if dt > 0.05 and _name != "await_events":
                        slow.append((_name, dt))

            setattr(ctl, method, timed)
    threading.Timer(seconds, ctl.stop).start()
    t0, c0 = time.monotonic(), time.process_time()
    profile = os.environ.get("EVOQ_BENCH_PROFILE")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        state = prof.runcall(ctl.run)
        prof.dump_stats(f"{profile}.{name}")
    else:
        state = ctl.run()
    cpu, wall = time.process_time() - c0, time.monotonic() - t0
    submissions[0] = state.next_trial
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps({"name": name, "cpu_s": cpu, "wall_s": wall, "submitted": state.next_trial,
                               "conflicts": ctl.conflicts, "samples": samples, "rss_mb": rss, "slow": slow}))  # fmt: skip


# -- one scenario --------------------------------------------------------------------------------
def redis_info(client: redis.Redis, streams: list[str] = ()) -> dict[str, float]:  # type: ignore[assignment]
    cpu: Any = client.info("cpu")
    mem: Any = client.info("memory")
    in_streams = sum(float(client.memory_usage(s, samples=0) or 0) for s in streams)
    # client buffers (a thousand connections' query buffers) swing with traffic; counted apart
    clients = float(mem.get("mem_clients_normal", 0))
    return {"cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            "used_memory": float(mem["used_memory"]), "streams": in_streams, "clients": clients}  # fmt: skip


def reactions(events: list[Any]) -> list[float]:
    """Completion -> next submission delays (ms), first in first out, once the population is full:
    from the first child on (children and re-evaluations alike). Before it, as in NNI, results of
    the initial population free no slot: the first children wait for all ``P`` results, and
    re-evaluations may run meanwhile (see :func:`fill_wait`)."""
    pending: list[float] = []
    out = []
    evolving = False
    for e in events:
        if isinstance(e, TrialSubmitted):
            evolving = evolving or e.phase == "evolve"
            if evolving and pending:  # a decision a result freed
                out.append((e.at - pending.pop(0)) * 1000)
        elif isinstance(e, TrialCompleted) and evolving:
            pending.append(e.at)
    return out


def fill_wait(events: list[Any]) -> float | None:
    """Seconds from the last initial trial's submission to the first child's (the workers an
    experiment owns wait for the last initial results; re-evaluations may use them), or None."""
    last_init = first_child = None
    for e in events:
        if isinstance(e, TrialSubmitted):
            if e.phase == "init":
                last_init = e.at
            elif e.phase == "evolve":
                first_child = e.at
                break
    return None if last_init is None or first_child is None else first_child - last_init


def scenario(n_workers: int, n_exp: int, seconds: float, warmup: float, trial_s: tuple[float, float],
             prefetch: int, result_ttl: int, tmp: Path) -> dict[str, Any]:  # fmt: skip
    (tmp / f"r{n_workers}-{n_exp}").mkdir()
    server = LocalRedis(tmp / f"r{n_workers}-{n_exp}", extra=["--maxclients", "20000"])
    try:
        client = server.client()
        names = [f"scale{i}" for i in range(n_exp)]
        outs = [tmp / f"{n}-{n_workers}-{n_exp}.json" for n in names]
        total = warmup + seconds
        started = time.time()  # the steady window starts at started + warmup
        ctls = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--controller",
                    server.url,
                    name,
                    str(total),
                    str(prefetch),
                    str(result_ttl),
                    str(out),
                ]
            )
            for name, out in zip(names, outs, strict=True)
        ]
        result_box: dict[str, Any] = {}
        sims = threading.Thread(
            target=lambda: result_box.update(
                run_workers(server.url, n_workers, trial_s, total + 1, n_workers)
            ),
        )
        sims.start()
        time.sleep(warmup)
        streams = [Keys(n).stream for n in names]
        r0, t0 = redis_info(client, streams), time.monotonic()
        mem_samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(min(5.0, seconds - (time.monotonic() - t0) + 0.01))
            r = redis_info(client, streams)
            mem_samples.append(r["used_memory"] - r["streams"] - r["clients"])
        r1, t1 = redis_info(client, streams), time.monotonic()
        for p in ctls:
            p.wait(timeout=120)
        sims.join(timeout=60)
        stats = [json.loads(o.read_text()) for o in outs]
        react: list[float] = []
        waits: list[float | None] = []
        for name in names:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(Keys(name).stream)  # type: ignore[assignment]
            events = [decode(f[STREAM_FIELD]) for _, f in entries]
            steady = [e for e in events if started + warmup <= e.at <= started + total]
            react += reactions(steady)
            waits.append(fill_wait(events))
        share = math.ceil(n_workers / n_exp) + prefetch
        peaks = [max((s["in_flight"] for s in st["samples"][int(warmup) :]), default=0) for st in stats]
        submitted = sum(st["submitted"] for st in stats)
        conflicts = sum(st["conflicts"] for st in stats)
        ctl_cpu = sum(st["cpu_s"] for st in stats)
        return {
            "workers": n_workers,
            "experiments": n_exp,
            "trial_s": list(trial_s),
            "controller_cpu_ms_per_decision": 1000 * ctl_cpu / max(submitted, 1),
            "controller_cpu_pct": 100 * ctl_cpu / total,
            "redis_cpu_pct": 100 * (r1["cpu_s"] - r0["cpu_s"]) / (t1 - t0),
            "reaction_p50_ms": statistics.median(react) if react else math.nan,
            "reaction_p99_ms": statistics.quantiles(react, n=100)[98] if len(react) >= 100 else math.nan,
            "conflicts_per_submission": conflicts / max(submitted, 1),
            "population_fill_wait_s": max((w for w in waits if w is not None), default=math.nan),
            "submissions_per_s": submitted / total,
            "redis_mem_mb_start": r0["used_memory"] / 2**20,
            "redis_mem_mb_end": r1["used_memory"] / 2**20,
            "redis_other_mb_start": (r0["used_memory"] - r0["streams"] - r0["clients"]) / 2**20,
            "redis_other_mb_end": (r1["used_memory"] - r1["streams"] - r1["clients"]) / 2**20,
            "redis_clients_mb_end": r1["clients"] / 2**20,
            "stream_mb_end": r1["streams"] / 2**20,
            "redis_other_mb_samples": [m / 2**20 for m in mem_samples],
            "result_ttl": result_ttl,
            "in_flight_peak": peaks,
            "fair_share": share,
            "capacity_respected": all(p <= share for p in peaks),
            "controller_rss_mb": max(st["rss_mb"] for st in stats),
            "sim_worker_cpu_s": result_box.get("cpu_s"),
            "trials_done": result_box.get("trials"),
        }
    finally:
        server.stop()


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| workers | exps | ctl CPU ms/decision | ctl CPU % core | Redis CPU % | reaction p50/p99 ms | "
            "fill wait s | conflicts/submission | submissions/s | in flight peak / share | Redis MiB besides streams and "
            "client buffers start→end | streams MiB | client buffers MiB | ctl RSS MiB |")  # fmt: skip
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        peak = "/".join(map(str, r["in_flight_peak"]))
        lines.append(
            f"| {r['workers']} | {r['experiments']} | {r['controller_cpu_ms_per_decision']:.2f} | "
            f"{r['controller_cpu_pct']:.1f} | {r['redis_cpu_pct']:.1f} | {r['reaction_p50_ms']:.1f} / {r['reaction_p99_ms']:.1f} | "
            f"{r['population_fill_wait_s']:.1f} | {r['conflicts_per_submission']:.3f} | {r['submissions_per_s']:.1f} | {peak} / {r['fair_share']} | "
            f"{r['redis_other_mb_start']:.1f}→{r['redis_other_mb_end']:.1f} | {r['stream_mb_end']:.1f} | "
            f"{r['redis_clients_mb_end']:.1f} | {r['controller_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--controller":
        url, name, seconds, prefetch, result_ttl, out = sys.argv[2:8]
        controller_main(url, name, float(seconds), int(prefetch), int(result_ttl), Path(out))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--experiments", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per scenario")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds before the window opens")
    ap.add_argument("--trial", type=float, nargs=2, default=[10.0, 10.0], metavar=("MIN", "MAX"),
                    help="trial duration range in seconds (uniform)")  # fmt: skip
    ap.add_argument("--prefetch", type=int, default=0)
    ap.add_argument("--result-ttl", type=int, default=30,
                    help="RQ result TTL the controllers ask for (evoq's default is 600 s; shorter here so "
                    "that memory reaches its plateau within the window)")  # fmt: skip
    ap.add_argument(
        "--quick", action="store_true", help="100 and 300 workers, 1 and 4 experiments, 20 s windows"
    )
    ap.add_argument("--out", type=Path, help="write results.md and results.json here")
    args = ap.parse_args()
    if args.quick:
        args.workers, args.seconds, args.warmup = [100, 300], 20.0, 15.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.workers:
            for e in args.experiments:
                row = scenario(n, e, args.seconds, args.warmup, (args.trial[0], args.trial[1]), args.prefetch,
                               args.result_ttl, Path(tmp))  # fmt: skip
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "redis_other_mb_samples"}), flush=True)
    text = table(rows)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(text + "\n")
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
