#!/usr/bin/env python3
"""Fault campaign: real redis-server, real ``rq worker`` processes, a real ``evoq run``
controller, and random faults injected while each small experiment runs.

Each *schedule* (fully determined by its seed, up to timing) starts a redis-server (loopback,
a free port, AOF ``appendfsync everysec``, data in a temporary directory), 2-3 workers and a
controller (``evoq run --wait --lease-ttl 2 --heartbeat-ttl 1.5 --json``) on an experiment of
``evoq.examples.chaos:trial`` (trials sleep 0.05-0.4 s; a ``mode`` parameter, mostly ``"ok"``,
makes some raise, return NaN/inf/None/a string, or hang past ``trial_timeout``). While it runs,
this script acts as the supervisor (it keeps the workers alive, starting a fresh one whenever
one exits, and restarts the controller whenever it exits without finishing) and injects a
random sequence of faults:

* ``controller_kill``: SIGKILL of the controller (then a restart that waits for the lease);
* ``horse_kill``: SIGKILL of a work horse running a trial;
* ``worker_kill``: SIGKILL of a whole worker, main process and horse (then a fresh worker);
* ``worker_term``: SIGTERM of a worker (warm shutdown, then a fresh worker);
* ``redis_term`` / ``redis_kill``: redis-server stopped with SIGTERM / SIGKILL and restarted
  on the same port with its data;
* ``dup_completed``: the bytes of an existing ``trial_completed`` record XADDed again.

When the controller has exited 0, the workers are stopped, the log is exported with
``evoq export`` and checked from the exported file alone:

* the experiment finished ``completed`` and results == cycles, no run in flight, every accepted
  submission has exactly one terminal event that counted, attempts 0..n with one config
  (:func:`evoq.audit.check_invariants`);
* the last controller's ``--json`` state equals the replay of the log prefix it had read (its
  ``events`` count), that prefix includes ``experiment_finished``, and the replay of the whole
  log differs from it at most in ``events`` (what was appended after its last read, e.g. late
  duplicates, changes nothing);
* the audit of the file is clean (:func:`evoq.audit.audit_file`);
* every counted ``lost``/``preempted`` run was resubmitted as the next attempt (unless it was
  the trial's last allowed attempt);
* every misbehaving run ended with the failure kind its mode implies (or lost/preempted);
* the controller never died with a Python traceback; nothing of the schedule is left running.

A schedule that does not finish before ``--deadline`` is a violation; everything it started is
killed (process groups, plus any process carrying the schedule's environment tag, which also
catches work horses orphaned by a killed worker).

Writes ``DIR/summary.json`` (faults by kind, violations, lost-detection times — from each
fault's injection to the ``trial_failed`` kind=lost event's ``at`` — and per-schedule
durations), ``DIR/schedules.jsonl`` (one line per schedule as it ends) and, for each schedule
with a violation, its logs under ``DIR/failed/seed-N/``. Prints, last,
``schedules=N faults=F violations=V``; exits 0 only when there is no violation.

    .venv/bin/python scripts/fault_campaign.py --schedules 5 --seed 1 --out /tmp/campaign
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from evoq.audit import accepted_submissions, audit_file, check_invariants, counted_terminals
from evoq.codec import decode
from evoq.events import (
    INFRA_FAILURES,
    Event,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialSubmitted,
)
from evoq.examples.chaos import EXPECTED_FAILURE
from evoq.filelog import FileLog
from evoq.keys import STREAM_FIELD, Keys
from evoq.log import read_events
from evoq.reducer import StateBuilder, replay
from evoq.report import summary
from evoq.strategy import Strategy
from evoq.testing import LocalRedis
from workers.launch import worker_command

ROOT = Path(__file__).resolve().parent.parent
TAG_VAR = "EVOQ_CAMPAIGN_TAG"
TRIAL = "evoq.examples.chaos:trial"
QUEUE = "evoq"
FAULT_KINDS = (
    "controller_kill",
    "horse_kill",
    "worker_kill",
    "worker_term",
    "redis_term",
    "redis_kill",
    "dup_completed",
)
LOST_CAUSES = ("horse_kill", "worker_kill", "worker_term", "redis_term", "redis_kill")
"""Faults that can make a run lost (a warm shutdown normally does not; it is kept as a
candidate so that a lost run after one is attributed, not hidden)."""
MODE_CHOICES = ["ok"] * 12 + ["raise", "nan", "inf", "none", "string", "hang"]
LEASE_TTL = 2.0
HEARTBEAT_TTL = 1.5
TRIAL_TIMEOUT = 2


# -- processes ------------------------------------------------------------------------------------
def tagged_pids(prefix: str) -> list[int]:
    """Pids of the processes whose environment carries ``TAG_VAR=prefix...``."""
    needle = f"{TAG_VAR}={prefix}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if any(var.startswith(needle) for var in env.split(b"\0")):
            found.append(int(entry))
    return found


def kill_tagged(prefix: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process tagged with ``prefix`` (one by one, by pid); return those still
    alive after ``timeout`` (zombies of our own children are reaped by their Popen)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in tagged_pids(prefix) if not _zombie(p)]
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a worker's work horse)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``proc`` (started with its own session)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


@dataclass
class Managed:
    """One process started by a schedule."""

    kind: str
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float = field(default_factory=time.monotonic)


# -- one schedule ---------------------------------------------------------------------------------
@dataclass
class Fault:
    """One planned fault and what became of it."""

    kind: str
    delay: float
    at: float | None = None  # time.time() of the injection
    worker: str | None = None
    detail: str = ""
    skipped: str = ""


@dataclass
class Result:
    """The outcome of one schedule."""

    seed: int
    duration: float = 0.0
    workers: int = 0
    cycles: int = 0
    on_failure: str = ""
    faults: list[dict[str, Any]] = field(default_factory=list)
    trial_faults: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    controllers: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0
    final_status: str | None = None


def plan_faults(rng: random.Random) -> list[Fault]:
    """A random fault sequence: 2-3 controller kills plus 2-6 other faults, shuffled."""
    kinds = ["controller_kill"] * rng.randint(2, 3)
    others = ["horse_kill", "worker_kill", "worker_term", "redis_term", "redis_kill", "dup_completed"]
    weights = [3, 2, 1, 1, 1, 2]
    kinds += rng.choices(others, weights, k=rng.randint(2, 6))
    rng.shuffle(kinds)
    return [Fault(k, rng.uniform(0.1, 0.6) if i == 0 else rng.uniform(0.3, 1.6)) for i, k in enumerate(kinds)]


def write_spec(path: Path, name: str, seed: int, cycles: int, on_failure: str) -> None:
    """The schedule's experiment spec (TOML)."""
    modes = ", ".join(f'"{m}"' for m in MODE_CHOICES)
    path.write_text(
        f'name = "{name}"\ntrial = "{TRIAL}"\nseed = {seed}\n'
        "[strategy]\npopulation_size = 4\nsample_size = 2\n"
        f'cycles = {cycles}\nmutation_prob = 0.3\non_failure = "{on_failure}"\n'
        f"trial_timeout = {TRIAL_TIMEOUT}\n"
        f"[space]\nmode = [{modes}]\n"
        'sleep = { _type = "uniform", _value = [0.05, 0.4] }\n'
        "x = [0, 1, 2, 3, 4, 5, 6, 7]\n"
    )


class Schedule:
    """Runs one schedule: start everything, supervise, inject faults, check, clean up."""

    def __init__(
        self, seed: int, out: Path, deadline: float, campaign: str, keep: bool, stall: float = 20.0
    ) -> None:
        self.seed = seed
        self.out = out
        self.deadline_s = deadline
        self.stall_s = stall
        self.tag = f"{campaign}:{seed}:"
        self.keep = keep
        self.rng = random.Random(seed)
        self.name = f"chaos{seed}"
        self.res = Result(seed)
        self.dir = Path(tempfile.mkdtemp(prefix=f"evoq-campaign-{seed}-"))
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH", "")) if p)
        self.env["EVOQ_ALLOW"] = "evoq.examples.*"
        self.env[TAG_VAR] = self.tag
        self.env.pop("REDIS_URL", None)
        self.server: LocalRedis | None = None
        self.workers: list[Managed | None] = []
        self.next_start: list[float] = []
        self.controller: Managed | None = None
        self.counter = Counter[str]()
        self.last_json: dict[str, Any] | None = None

    # -- process management ----------------------------------------------------------------
    def _spawn(self, kind: str, cmd: list[str], env: dict[str, str] | None = None) -> Managed:
        self.counter[kind] += 1
        name = f"s{self.seed}-{kind}{self.counter[kind]}"
        out, err = self.dir / f"{name}.out", self.dir / f"{name}.err"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env={**self.env, **(env or {})}, stdout=fo, stderr=fe, start_new_session=True
            )
        return Managed(kind, name, proc, out, err)

    def start_worker(self, slot: int) -> None:
        """A fresh ``rq worker`` (evoq's command line) in ``slot``."""
        assert self.server is not None
        name = f"s{self.seed}-w{self.counter['w'] + 1}"
        cmd = worker_command(
            self.server.url, (QUEUE,), worker_class="rq.worker.Worker", monitoring=1, name=name
        )
        self.workers[slot] = self._spawn("w", cmd.argv, cmd.env)
        self.next_start[slot] = time.monotonic() + 0.5

    def start_controller(self) -> None:
        """``evoq run SPEC --redis-url URL --wait ...`` (waits for a killed one's lease)."""
        assert self.server is not None
        cmd = [
            sys.executable,
            "-m",
            "evoq.cli",
            "run",
            str(self.dir / "spec.toml"),
            "--redis-url",
            self.server.url,
            "--no-progress",
            "--json",
            "--wait",
            "--lease-ttl",
            str(LEASE_TTL),
            "--heartbeat-ttl",
            str(HEARTBEAT_TTL),
        ]
        self.controller = self._spawn("ctl", cmd)

    # -- faults ----------------------------------------------------------------------------
    def inject(self, f: Fault) -> bool:
        """Inject ``f``; False when it cannot be injected now (retry later)."""
        assert self.server is not None
        live = [w for w in self.workers if w is not None and w.proc.poll() is None]
        if f.kind == "controller_kill":
            c = self.controller
            if c is None or c.proc.poll() is not None:
                return False
            f.at = time.time()
            kill_group(c.proc)
            c.proc.wait()
            f.detail = c.name
            return True
        if f.kind in ("horse_kill", "worker_kill"):
            busy = [(w, children(w.proc.pid)) for w in live]
            busy = [(w, h) for w, h in busy if h]
            if not busy:
                return False
            w, horses = self.rng.choice(busy)
            f.at, f.worker = time.time(), w.name
            if f.kind == "horse_kill":
                for pid in horses:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                f.detail = f"horse {horses}"
            else:
                for pid in horses:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                kill_group(w.proc)
                f.detail = f"worker {w.proc.pid} + horse {horses}"
            return True
        if f.kind == "worker_term":
            if not live:
                return False
            w = self.rng.choice(live)
            f.at, f.worker = time.time(), w.name
            w.proc.send_signal(signal.SIGTERM)
            f.detail = f"busy={bool(children(w.proc.pid))}"
            return True
        if f.kind in ("redis_term", "redis_kill"):
            sig = signal.SIGTERM if f.kind == "redis_term" else signal.SIGKILL
            down = self.rng.uniform(0.2, 1.0)
            f.at = time.time()
            self.server.stop(sig)
            time.sleep(down)
            self.server.start()
            f.detail = f"down {down:.2f}s"
            return True
        if f.kind == "dup_completed":
            client = self.server.client()
            stream = Keys(self.name).stream
            entries: Any = client.xrange(stream)
            done = [
                (i, d[STREAM_FIELD])
                for i, d in entries
                if decode(d[STREAM_FIELD]).__class__ is TrialCompleted
            ]
            if not done:
                return False
            pos, data = self.rng.choice(done)
            f.at = time.time()
            client.xadd(stream, {STREAM_FIELD: data})
            f.detail = f"copy of {pos.decode()}"
            return True
        raise ValueError(f.kind)

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> Result:
        """Run the schedule to its end and return its result (never raises)."""
        t0 = time.monotonic()
        try:
            self._run(t0)
        except Exception:
            self.res.violations.append(f"campaign error: {traceback.format_exc(limit=5)}")
        finally:
            self.res.duration = round(time.monotonic() - t0, 2)
            self._cleanup()
        return self.res

    def _run(self, t0: float) -> None:
        res, rng = self.res, self.rng
        res.workers = rng.randint(2, 3)
        res.cycles = rng.randint(12, 16)
        res.on_failure = rng.choice(["worst", "ignore"])
        plan = plan_faults(rng)
        write_spec(self.dir / "spec.toml", self.name, self.seed, res.cycles, res.on_failure)
        self.server = LocalRedis(self.dir, env=self.env, own_session=True)
        self.workers = [None] * res.workers
        self.next_start = [0.0] * res.workers
        for slot in range(res.workers):
            self.start_worker(slot)
        self.start_controller()
        deadline = t0 + self.deadline_s
        pending = list(plan)
        due: float | None = None  # the fault clock starts when a first trial runs (or after 5 s)
        started = time.monotonic()
        retry_until: float | None = None
        finished = False
        probe, last_len, last_change, stalls = 0.0, -1, time.monotonic(), 0
        while not finished:
            now = time.monotonic()
            if now > deadline:
                res.violations.append(
                    f"schedule did not finish within {self.deadline_s:g}s; {self.diagnose()}"
                )
                break
            if now >= probe:  # stall watch: the stream must keep growing until the end
                probe = now + 0.5
                length = self._xlen()
                if length is not None and length != last_len:
                    last_len, last_change = length, now
                elif now - last_change > self.stall_s and stalls < 2:
                    stalls += 1
                    res.violations.append(
                        f"stalled: no new event for {now - last_change:.0f}s with the controller "
                        f"running; {self.diagnose()}; remedy: workers replaced"
                    )
                    for w in self.workers:  # what a supervisor would do: replace the workers
                        if w is not None:
                            for pid in children(w.proc.pid):
                                with contextlib.suppress(ProcessLookupError):
                                    os.kill(pid, signal.SIGKILL)
                            kill_group(w.proc)
                            w.proc.wait()
                    last_change = now
            c = self.controller
            assert c is not None
            rc = c.proc.poll()
            if rc is not None:
                finished = self._controller_exited(c, rc)
                if finished:
                    break
                self.start_controller()
            for slot, w in enumerate(self.workers):
                if (w is None or w.proc.poll() is not None) and now >= self.next_start[slot]:
                    self.start_worker(slot)
            if due is None and (now - started > 5 or any(children(w.proc.pid) for w in self.workers if w)):
                due = now + (pending[0].delay if pending else 0.0)
            if pending and due is not None and now >= due:
                f = pending[0]
                try:
                    ok = self.inject(f)
                except redis.RedisError as exc:  # Redis restarting: try again shortly
                    ok, f.detail = False, f"{type(exc).__name__}"
                if ok:
                    res.faults.append(_fault_json(pending.pop(0)))
                    retry_until = None
                    due = time.monotonic() + (pending[0].delay if pending else 0.0)
                else:
                    if retry_until is None:
                        retry_until = now + 3.0
                    if now > retry_until:
                        f.skipped = "no target in 3s"
                        res.faults.append(_fault_json(pending.pop(0)))
                        retry_until = None
                        due = now + (pending[0].delay if pending else 0.0)
                    else:
                        due = now + 0.05
            time.sleep(0.03)
        for f in pending:
            f.skipped = "experiment already finished"
            res.faults.append(_fault_json(f))
        self._stop_workers()
        if finished:
            self._check()

    def _xlen(self) -> int | None:
        assert self.server is not None
        try:
            return int(self.server.client().xlen(Keys(self.name).stream))
        except redis.RedisError:
            return None

    def diagnose(self) -> str:
        """What the cluster looks like (for a stall or a missed deadline)."""
        assert self.server is not None
        live = [w.name for w in self.workers if w is not None and w.proc.poll() is None]
        try:
            client = self.server.client()
            clients: Any = client.client_list()
            names = sorted(str(c.get("name")) for c in clients if c.get("name"))
            unnamed = sum(1 for c in clients if not c.get("name"))
            members: Any = client.smembers(f"rq:workers:{QUEUE}")
            registered = sorted(x.decode() for x in members)
            queued = client.llen(f"rq:queue:{QUEUE}")
            stream = Keys(self.name).stream
            tail: Any = client.xrevrange(stream, count=4)
            last = [type(decode(d[STREAM_FIELD])).__name__ for _, d in reversed(tail)]
            entries: Any = client.xrange(stream)
            state = summary(replay([decode(d[STREAM_FIELD]) for _, d in entries]))
            where = (
                f"results {state['results']}/{state['cycles']} running {state['running']} "
                f"population {len(state['population'])}"
            )
        except redis.RedisError as exc:
            return f"live worker processes {live}; Redis unreadable: {exc}"
        return (
            f"live worker processes {live}, registered {registered}, named connections {names} "
            f"(+{unnamed} unnamed), queue length {queued}, {where}, last events {last}"
        )

    def _controller_exited(self, c: Managed, rc: int) -> bool:
        """Record a controller exit; True when the experiment is finished."""
        assert self.server is not None
        err = c.err.read_text(errors="replace")
        killed = rc == -signal.SIGKILL
        last = [line for line in err.strip().splitlines() if line.strip()]
        self.res.controllers.append(
            {"name": c.name, "rc": rc, "last": "" if killed else (last[-1] if last else "")}
        )
        if "Traceback" in err:
            self.res.violations.append(f"controller {c.name} (rc {rc}) died with a traceback: {last[-1:]}")
        if rc == 0:
            out = c.out.read_text()
            try:
                self.last_json = json.loads(out)
            except ValueError:
                self.res.violations.append(f"controller {c.name} exited 0 without JSON: {out[:200]!r}")
                return True
            try:
                entries: Any = self.server.client().xrevrange(Keys(self.name).stream, count=50)
                has_finish = any(isinstance(decode(d[STREAM_FIELD]), ExperimentFinished) for _, d in entries)
            except redis.RedisError:
                has_finish = False
            if not has_finish:
                self.res.notes.append(f"controller {c.name} exited 0 but the stream has no finish (yet)")
            return True
        if rc == 1:
            self.res.violations.append(f"controller {c.name} says the experiment failed: {last[-1:]}")
        return False

    def _stop_workers(self) -> None:
        for w in self.workers:
            if w is not None:
                kill_group(w.proc, signal.SIGTERM)
        end = time.monotonic() + 3
        for w in self.workers:
            if w is not None:
                try:
                    w.proc.wait(timeout=max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill_group(w.proc)
                    w.proc.wait()

    def _cleanup(self) -> None:
        for m in [self.controller, *self.workers]:
            if m is not None:
                kill_group(m.proc)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(timeout=5)
        if self.server is not None:
            self.server.stop(signal.SIGKILL)
        stray = kill_tagged(self.tag)
        if stray:
            self.res.violations.append(f"processes left behind that could not be killed: {stray}")
        if self.res.violations or self.keep:
            dest = (
                self.out / "failed" / f"seed-{self.seed}"
                if self.res.violations
                else self.out / "kept" / f"seed-{self.seed}"
            )
            with contextlib.suppress(OSError):
                shutil.copytree(
                    self.dir, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("appendonlydir")
                )
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- checks ----------------------------------------------------------------------------
    def _check(self) -> None:
        assert self.server is not None
        res = self.res
        path = self.dir / "export.evoq"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "evoq.cli",
                "export",
                self.name,
                "-o",
                str(path),
                "--redis-url",
                self.server.url,
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            res.violations.append(f"evoq export failed ({done.returncode}): {done.stderr.strip()[-300:]}")
            return
        events = [e for _, e in read_events(FileLog(path))]
        res.events = len(events)
        res.violations += check_log(events, self.last_json)
        rep = audit_file(str(path))
        if not rep.ok:
            res.violations += [f"audit: record {f.record} [{f.kind}] {f.message}" for f in rep.findings]
        state = replay(events)
        res.final_status = state.status
        res.trial_faults = dict(
            Counter(
                f"trial_{e.config.get('mode')}"
                for e in accepted_submissions(events)
                if e.config.get("mode") != "ok"
            )
        )
        res.notes += misclassified_ok(events)
        res.lost = lost_detections(events, res.faults)


def _fault_json(f: Fault) -> dict[str, Any]:
    return {"kind": f.kind, "at": f.at, "worker": f.worker, "detail": f.detail, "skipped": f.skipped}


# -- log checks (pure) ----------------------------------------------------------------------------
def check_log(events: list[Event], final: dict[str, Any] | None) -> list[str]:
    """Every check that needs only the exported log (and the last controller's JSON)."""
    violations = [f"invariant: {v}" for v in check_invariants(events)]
    finish = [n for n, e in enumerate(events) if isinstance(e, ExperimentFinished)]
    if not finish:
        violations.append("the log has no experiment_finished record")
    if final is None:
        violations.append("no final controller state (no controller exited 0 with JSON)")
    else:
        n = final.get("events")
        whole = _plain(summary(replay(events)))
        if not isinstance(n, int) or not 0 < n <= len(events):
            violations.append(f"controller reports {n!r} events; the log holds {len(events)}")
        else:
            if finish and n <= finish[0]:
                violations.append(
                    f"controller stopped at event {n}, before experiment_finished (#{finish[0]})"
                )
            prefix = _plain(summary(replay(events[:n])))
            if prefix != final:
                diff = sorted(k for k in set(prefix) | set(final) if prefix.get(k) != final.get(k))
                violations.append(f"controller state != replay of its {n} events, in {diff}")
        strip = {k: v for k, v in whole.items() if k != "events"}
        if strip != {k: v for k, v in final.items() if k != "events"}:
            diff = sorted(k for k in strip if strip.get(k) != final.get(k))
            violations.append(f"controller state != replay of the whole log, in {diff}")
    created = events[0] if events else None
    strategy = (
        Strategy.from_dict(created.strategy) if created is not None and hasattr(created, "strategy") else None
    )
    max_attempts = strategy.max_attempts if strategy is not None else 3
    accepted = {(s.trial, s.attempt): i for i, s in enumerate_accepted(events)}
    for n, t, sub in counted_terminals(events):
        mode = str(sub.config.get("mode", "ok"))
        if isinstance(t, TrialFailed) and t.kind in INFRA_FAILURES:
            if t.attempt + 1 < max_attempts:
                nxt = accepted.get((t.trial, t.attempt + 1))
                if nxt is None or nxt < n:
                    violations.append(f"trial {t.trial} attempt {t.attempt} was {t.kind} but not resubmitted")
            continue
        want = EXPECTED_FAILURE.get(mode)
        got = (
            None
            if isinstance(t, TrialCompleted) and math.isfinite(t.metric)
            else (t.kind if isinstance(t, TrialFailed) else "invalid_metric")
        )
        if want is not None and got != want:
            violations.append(
                f"trial {t.trial} attempt {t.attempt} (mode {mode}) ended {got}, expected {want}"
            )
    return violations


def enumerate_accepted(events: list[Event]) -> Iterator[tuple[int, TrialSubmitted]]:
    """``(index, submission)`` for the accepted submissions."""
    b = StateBuilder()
    for n, e in enumerate(events):
        before = b.running.get(e.trial) if isinstance(e, TrialSubmitted) else None
        b.add(e)
        if isinstance(e, TrialSubmitted):
            after = b.running.get(e.trial)
            if after is not None and after is not before:
                yield n, e


def misclassified_ok(events: list[Event]) -> list[str]:
    """Healthy (mode ok) runs that did not complete for a reason other than the infrastructure
    (e.g. a timeout of a starved horse on a noisy machine): notes, not violations."""
    notes = []
    for _, t, sub in counted_terminals(events):
        if sub.config.get("mode") == "ok" and isinstance(t, TrialFailed) and t.kind not in INFRA_FAILURES:
            notes.append(f"ok trial {t.trial} attempt {t.attempt} failed {t.kind}: {t.message[:120]}")
    return notes


def lost_detections(events: list[Event], faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ``trial_failed`` kind=lost event matched to the fault that most likely caused it: the
    latest earlier fault on the run's worker or on Redis (for a run not yet started, whose worker
    is unknown: the latest earlier lost-causing fault of any worker, or of Redis)."""
    injected = [f for f in faults if f["at"] is not None and f["kind"] in LOST_CAUSES]
    out = []
    for e in events:
        if not (isinstance(e, TrialFailed) and e.kind == "lost"):
            continue
        before = [
            f
            for f in injected
            if f["at"] <= e.at and (f["kind"].startswith("redis") or not e.worker or f["worker"] == e.worker)
        ]
        if "Work-horse terminated" in e.message:  # a killed horse: not a warm shutdown
            before = [f for f in before if f["kind"] != "worker_term"] or before
        cause = before[-1] if before else None
        out.append(
            {
                "trial": e.trial,
                "attempt": e.attempt,
                "worker": e.worker,
                "at": e.at,
                "cause": cause["kind"] if cause else None,
                "detect_s": round(e.at - cause["at"], 3) if cause else None,
                "reason": e.message[:160],
            }
        )
    return out


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip (tuples to lists), as the controller's output went through."""
    plain: dict[str, Any] = json.loads(json.dumps(data))
    return plain


# -- the campaign ---------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def aggregate(results: list[Result], wall: float) -> dict[str, Any]:
    """The campaign's JSON summary."""
    faults: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    trial_faults: Counter[str] = Counter()
    for r in results:
        for f in r.faults:
            (skipped if f["skipped"] else faults)[f["kind"]] += 1
        trial_faults.update(r.trial_faults)
    detect = [d["detect_s"] for r in results for d in r.lost if d["detect_s"] is not None]
    by_cause: dict[str, list[float]] = {}
    for r in results:
        for d in r.lost:
            if d["detect_s"] is not None:
                by_cause.setdefault(d["cause"], []).append(d["detect_s"])
    durations = [r.duration for r in results]

    def stats(values: list[float]) -> dict[str, Any]:
        return {
            "n": len(values),
            "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95),
            "max": max(values) if values else None,
        }

    return {
        "schedules": len(results),
        "faults": sum(faults.values()) + sum(trial_faults.values()),
        "injected_faults": sum(faults.values()),
        "faults_by_kind": dict(sorted(faults.items())),
        "trial_faults_by_kind": dict(sorted(trial_faults.items())),
        "skipped_faults_by_kind": dict(sorted(skipped.items())),
        "violations": sum(len(r.violations) for r in results),
        "violating_seeds": [r.seed for r in results if r.violations],
        "violation_details": {str(r.seed): r.violations for r in results if r.violations},
        "notes": {str(r.seed): r.notes for r in results if r.notes},
        "lost_detection_s": {**stats(detect), "by_cause": {k: stats(v) for k, v in sorted(by_cause.items())}},
        "lost_unattributed": sum(1 for r in results for d in r.lost if d["detect_s"] is None),
        "controller_exits": dict(Counter(str(c["rc"]) for r in results for c in r.controllers)),
        "schedule_duration_s": {
            **stats(durations),
            "mean": round(statistics.fmean(durations), 2) if durations else None,
        },
        "durations_by_seed": {str(r.seed): r.duration for r in results},
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry; see the module docstring."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--schedules", type=int, default=5, help="number of schedules (default 5)")
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the first schedule; schedule i uses seed+i"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for summary.json and logs")
    parser.add_argument("--jobs", type=int, default=1, help="schedules run at once (default 1)")
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds a schedule may take (default 120)"
    )
    parser.add_argument(
        "--stall",
        type=float,
        default=20.0,
        help="seconds without a new event that count as a stall (a violation; the workers are then replaced)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep every schedule's logs, not only failed ones"
    )
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        parser.error("redis-server not found (install Debian's redis-server package)")
    args.out.mkdir(parents=True, exist_ok=True)
    campaign = uuid.uuid4().hex[:12]
    lines = args.out / "schedules.jsonl"
    lines.write_text("")
    lock = threading.Lock()
    results: list[Result] = []
    t0 = time.monotonic()

    def interrupted(signum: int, frame: Any) -> None:
        kill_tagged(campaign)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)

    def one(seed: int) -> Result:
        return Schedule(seed, args.out, args.deadline, campaign, args.keep, args.stall).run()

    def record(r: Result) -> None:
        with lock:
            results.append(r)
            with lines.open("a") as fh:
                fh.write(json.dumps(r.__dict__, default=str) + "\n")
            kinds = Counter(f["kind"] for f in r.faults if not f["skipped"])
            print(
                f"[{len(results)}/{args.schedules}] seed={r.seed} {r.duration:.1f}s workers={r.workers} "
                f"cycles={r.cycles} faults={dict(kinds)} trial_faults={r.trial_faults} "
                f"lost={[d['detect_s'] for d in r.lost]} violations={len(r.violations)}",
                flush=True,
            )
            for v in r.violations:
                print(f"    VIOLATION seed={r.seed}: {v}", flush=True)

    seeds = range(args.seed, args.seed + args.schedules)
    try:
        if args.jobs <= 1:
            for s in seeds:
                record(one(s))
        else:
            with ThreadPoolExecutor(args.jobs) as pool:
                for fut in as_completed([pool.submit(one, s) for s in seeds]):
                    record(fut.result())
    finally:
        kill_tagged(campaign)
    results.sort(key=lambda r: r.seed)
    data = aggregate(results, time.monotonic() - t0)
    (args.out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps({k: data[k] for k in ("faults_by_kind", "trial_faults_by_kind", "lost_detection_s")}))
    print(
        f"schedules={data['schedules']} faults={data['faults']} violations={data['violations']}", flush=True
    )
    return 0 if data["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
