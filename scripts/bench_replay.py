#!/usr/bin/env python3
"""Replay speed and memory: rebuild state from a file log vs. only unpacking its records.

Builds a realistic log (P=100, S=25, 20% of trials failing, 8 trials in flight) with evoq's own
proposals in a temporary file, then, each in a fresh subprocess so that peak RSS is the
reader's own, times:

* ``unpack_only``: read every frame of the file and msgpack-unpack it (the physical floor);
* ``replay``: read, decode into events and fold them into the state (what a controller does);
* ``audit``: ``evoq audit``'s full check (chain, schema, every decision re-derived).

Prints one figure per line: ``unpack_only_events_per_s=``, ``replay_events_per_s=``, ``ratio=``
(replay / unpack-only, medians of ``--repeat`` runs measured alternately in the same run) and
``peak_rss_mb=`` of the replay process, plus the same for a log a tenth as long to show how
memory scales.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

from evoq.codec import encode
from evoq.events import Event, ExperimentCreated, TrialCompleted, TrialFailed, TrialStarted, TrialSubmitted
from evoq.filelog import FileLog
from evoq.log import replay_log
from evoq.proposal import propose
from evoq.reducer import StateBuilder
from evoq.strategy import Strategy

SPACE = {f"x{i}": list(range(10)) for i in range(8)}


def build_log(path: Path, n_events: int, *, seed: int = 0, in_flight: int = 8, t0: float = 0.0) -> int:
    """Write a log of about ``n_events`` events made by evoq's proposals, one trial ending per
    second from Unix time ``t0``; return the count."""
    strategy = Strategy(cycles=10**9, max_failures=10**9)
    rng = random.Random(seed)
    log = FileLog(path)
    created = ExperimentCreated("bench", SPACE, strategy.to_dict(), seed, "bench:trial", "bench", t0)
    b = StateBuilder()
    b.add(created)
    batch: list[Event] = [created]
    written = 0
    t = t0
    while written + len(batch) < n_events:
        while len(b.running) < in_flight:
            p = propose(b)
            if p is None:
                break
            e = TrialSubmitted(p.trial, p.attempt, p.config, p.parent, p.phase, p.note, t)
            b.add(e)
            batch.append(e)
        trial = min(b.running)
        r = b.running[trial]
        t += 1.0
        step: tuple[Event, Event] = (
            TrialStarted(trial, r.attempt, "w1", t),
            TrialFailed(trial, r.attempt, "error", "ValueError: boom", "w1", t + 1)
            if rng.random() < 0.2
            else TrialCompleted(trial, r.attempt, sum(r.config.values()) + rng.random(), 1.0, "w1", t + 1),
        )
        for ev in step:
            b.add(ev)
            batch.append(ev)
        if len(batch) >= 10_000:
            log.append([encode(e) for e in batch])
            written += len(batch)
            batch = []
    log.append([encode(e) for e in batch])
    return written + len(batch)


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it is not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(path: str, mode: str) -> dict[str, float]:
    log = FileLog(path)
    t0 = time.perf_counter()
    n = 0
    if mode == "unpack":
        unpackb = msgpack.unpackb
        for _pos, data in log.read():
            unpackb(data, raw=False, use_list=False, strict_map_key=True)
            n += 1
    elif mode == "audit":
        from evoq.audit import audit_file

        report = audit_file(path)
        assert report.ok, report.findings
        n = report.records
    else:
        n = replay_log(log).events
    dt = time.perf_counter() - t0
    rss_mb = _peak_rss_mb()
    return {"events": n, "seconds": dt, "events_per_s": n / dt, "peak_rss_mb": rss_mb}


def measure(path: Path, mode: str) -> dict[str, float]:
    """Run one measurement in a fresh interpreter and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--_child", mode, str(path)], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the log (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (medians are printed)")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(_measure(args._child[1], args._child[0])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        for label, n in (("", args.events), ("_tenth", max(args.events // 10, 1000))):
            path = Path(tmp) / f"bench{label}.evoqlog"
            t0 = time.perf_counter()
            count = build_log(path, n)
            print(
                f"# built {count} events ({os.path.getsize(path) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f}s",
                file=sys.stderr,
            )
            unpack_runs, replay_runs, audit_runs = [], [], []
            for _ in range(args.repeat):
                unpack_runs.append(measure(path, "unpack"))
                replay_runs.append(measure(path, "replay"))
                if not label:
                    audit_runs.append(measure(path, "audit"))
            u = statistics.median(r["events_per_s"] for r in unpack_runs)
            r = statistics.median(r["events_per_s"] for r in replay_runs)
            a = statistics.median(r["events_per_s"] for r in audit_runs) if audit_runs else 0.0
            figures[label] = (count, u, r, max(x["peak_rss_mb"] for x in replay_runs), a)
    count, u, r, rss, audit_rate = figures[""]
    tcount, _, _, trss, _ = figures["_tenth"]
    print(f"events={count}")
    print(f"unpack_only_events_per_s={u:.0f}")
    print(f"replay_events_per_s={r:.0f}")
    print(f"ratio={r / u:.3f}")
    print(f"peak_rss_mb={rss:.1f}")
    print(f"peak_rss_mb_at_{tcount}_events={trss:.1f}")
    print(f"audit_events_per_s={audit_rate:.0f}")


if __name__ == "__main__":
    main()
