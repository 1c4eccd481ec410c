"""The controller: replay the stream, then block on it, fold, propose and commit.

Its state is never stored: it is rebuilt by replaying the experiment's Redis Stream and then
kept up to date by folding new entries as ``XREAD BLOCK`` delivers them (no fixed-interval
polling). Every write goes through one path, :meth:`Controller.commit`: one Lua script, run
atomically by Redis in one round trip, that checks that the lease is ours and that nothing which
could change the decision was appended since the last entry folded, and only then appends the
event — and, for a submission, runs the commands that enqueue its RQ job (recorded from RQ's own
enqueue code). Entries that cannot change a decision (a worker's ``trial_started`` or
``trial_progressed``: neither changes anything :func:`~evoq.proposal.propose` reads) do not stop
the commit; they are handed back and folded before the new event, in stream order. Anything else
aborts it; the controller folds what arrived and decides again. So each decision is exactly what
the log prefix before it derives (an auditor re-derives it), and a crash can never leave a logged
trial without its job or a job without its event.

Exactly one controller runs an experiment (:mod:`evoq.lease`). Lost runs are found by
:mod:`evoq.liveness` from a snapshot of the runs' RQ jobs and heartbeat keys.

If the stream loses its tail (Redis restarted from an older AOF, a key deleted or trimmed), the
commit sees that the last entry folded is gone and replays the stream from scratch; when the
stream no longer holds the experiment at all, the controller stops with an error.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from .codec import encode
from .events import (
    Event,
    ExperimentCreated,
    ExperimentExtended,
    ExperimentFinished,
    TrialFailed,
    TrialSubmitted,
)
from .keys import DEFAULT_QUEUE, EXPERIMENTS, STREAM_FIELD, Keys, queue_controllers
from .lease import ControllerError, Lease, LeaseHeldError, LeaseLostError
from .liveness import SUSPECTS_SCRIPT, JobProbe, fair_share, judge
from .log import unpack_records
from .proposal import Proposal, may_submit, propose
from .redislog import RedisLog, _record, stream_id
from .reducer import Run, State, StateBuilder, finish_reason, status_of
from .space import SearchSpace
from .strategy import Strategy

log = logging.getLogger("evoq.controller")

TRIAL_ENTRY = "workers.trial.run_trial"
SERIALIZER = "workers.serializer.MsgpackSerializer"
JOB_CLASS = "workers.job.EvoqJob"


def fetch_job(client: redis.Redis, job_id: str) -> Job:
    """An evoq job read back from Redis with the workers' job class, which reads a hash RQ's own
    class would raise on (a hostile value, a zlib bomb) as a refused job instead.

    Raises:
        NoSuchJobError: no such job.
    """
    from workers.job import EvoqJob

    return EvoqJob.fetch(job_id, connection=client, serializer=SERIALIZER)


__all__ = [
    "Controller",
    "ControllerError",
    "ControllerOptions",
    "ExperimentMismatchError",
    "LeaseHeldError",
    "LeaseLostError",
]


class ExperimentMismatchError(ControllerError):
    """The stream holds an experiment of the same name with other parameters."""


class LogRegressedError(ControllerError):
    """The stream lost entries this controller had folded and no longer holds the experiment."""


@dataclass(frozen=True, kw_only=True)
class ControllerOptions:
    """How the controller runs (not part of the experiment's definition).

    Attributes:
        queue: the RQ queue trials go to (shared by experiments).
        lease_ttl: seconds the lease lives without renewal (renewed every third of it).
        heartbeat_ttl: seconds a running trial's heartbeat key lives without refresh: a worker
            silent for this long has its run declared lost.
        check_interval: seconds between checks of running jobs (also the XREAD BLOCK timeout).
        wait_for_lease: wait for another controller's lease instead of exiting.
        result_ttl: seconds RQ keeps a finished job's hash (the log holds the result).
        failure_ttl: seconds RQ keeps a failed job (for its traceback; RQ's default is a year).
        capacity: a function giving the number of live workers (default: RQ workers registered
            on the queue, checked against the connections' names every 30 s; on a queue shared
            with other experiments, this experiment's fair share of them).
        backend: how messages name where the experiment lives ("this Redis", "the embedded log").
        preempt_on_stop: when stopped before the end, record the runs in flight as ``preempted``
            (the embedded default: its worker threads end with the process, and the runs are
            re-run as new attempts on the next start).
    """

    queue: str = DEFAULT_QUEUE
    lease_ttl: float = 10.0
    heartbeat_ttl: float = 10.0
    check_interval: float = 1.0
    wait_for_lease: bool = False
    result_ttl: int = 600
    failure_ttl: int = 86400
    capacity: Callable[[], int] | None = None
    backend: str = "this Redis"
    preempt_on_stop: bool = False


def _entry_record(fields: Any, raw_id: Any) -> bytes:
    """The record of a stream entry handed back by the commit script (fields as a flat list)."""
    pairs = dict(zip(fields[0::2], fields[1::2], strict=False)) if isinstance(fields, list) else fields
    return _record(pairs, raw_id)


def experiment_matches(
    logged: ExperimentCreated, requested: ExperimentCreated, given: Collection[str] | None = None
) -> list[str]:
    """What the user asked for that differs from the logged experiment (empty when they agree).

    ``given`` names the strategy parameters the user set explicitly; only those are compared
    (the others take the logged values; a size resolved at creation never changes). None
    compares every parameter. ``cycles`` is not compared: a larger one extends the experiment.
    """
    diffs = []
    a, b = SearchSpace.parse(logged.space), SearchSpace.parse(requested.space)
    if a != b:
        diffs.append(f"space ({space_diff(a, b)})")
    sa, sb = Strategy.from_dict(logged.strategy).to_dict(), Strategy.from_dict(requested.strategy).to_dict()
    keys = [k for k in sa if k != "cycles" and (given is None or k in given)]
    diffs.extend(f"strategy.{k} ({sb[k]!r}; the log has {sa[k]!r})" for k in keys if sa[k] != sb[k])
    if logged.seed != requested.seed:
        diffs.append(f"seed ({requested.seed}; the log has {logged.seed})")
    if logged.trial != requested.trial:
        diffs.append(f"trial ({requested.trial!r}; the log has {logged.trial!r})")
    return diffs


def space_diff(logged: SearchSpace, requested: SearchSpace) -> str:
    """Which parameters differ between two spaces, in a few words."""
    a, b = logged.spec(), requested.spec()
    added = [k for k in b if k not in a]
    removed = [k for k in a if k not in b]
    changed = [k for k in b if k in a and a[k] != b[k]]
    parts = [f"{what} {', '.join(map(repr, names))}" for what, names in
             (("new", added), ("removed", removed), ("changed", changed)) if names]  # fmt: skip
    if not parts and list(a) != list(b):
        parts.append("parameter order")
    return "; ".join(parts) or "values"


Decision = tuple[Event, Proposal | None]
"""What :meth:`Controller.commit` appends: an event, and the proposal whose job to enqueue."""

_CONFLICT_BACKOFF = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)

COMMIT_SCRIPT = r"""
-- KEYS: lease, stream. ARGV: lease value, last id folded ('' none), record, field name,
-- number of commands, then per command its argument count and arguments.
local unpack = unpack or table.unpack
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'lease'} end
local last = ARGV[2]
local passed = {}
if last == '' then
  if redis.call('XLEN', KEYS[2]) > 0 then return {'conflict'} end
else
  if #redis.call('XRANGE', KEYS[2], last, last, 'COUNT', 1) == 0 then return {'regressed'} end
  local after = redis.call('XRANGE', KEYS[2], '(' .. last, '+', 'COUNT', 201)
  if #after > 200 then return {'conflict'} end  -- far behind: catch up first
  for _, entry in ipairs(after) do
    local fields, rec = entry[2], nil
    for j = 1, #fields, 2 do
      if fields[j] == ARGV[4] then rec = fields[j + 1] end
    end
    -- only a worker's trial_started / trial_progressed may pass: they change no decision
    -- (msgpack: a fixarray, then the tag as a fixstr of 13 or 16 bytes: 0xad or 0xb0)
    if not rec or not ((string.byte(rec, 2) == 173 and string.sub(rec, 3, 15) == 'trial_started')
                       or (string.byte(rec, 2) == 176 and string.sub(rec, 3, 18) == 'trial_progressed')) then
      return {'conflict'}
    end
    passed[#passed + 1] = entry
  end
end
-- every key the commands write must hold its type (or nothing): a key someone else overwrote
-- would fail a command half-way, after the append
local wants = {rpush = 'list', lpush = 'list', hset = 'hash', hmset = 'hash', sadd = 'set', zadd = 'zset'}
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local n = tonumber(ARGV[i])
  local want = wants[string.lower(ARGV[i + 1])]
  if want then
    local kind = redis.call('TYPE', ARGV[i + 2])['ok']
    if kind ~= 'none' and kind ~= want then return {'corrupt', ARGV[i + 2], kind} end
  end
  i = i + n + 1
end
local id = redis.call('XADD', KEYS[2], '*', ARGV[4], ARGV[3])
i = 6
for _ = 1, tonumber(ARGV[5]) do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return {'ok', id, passed}
"""
_RECONNECT_BACKOFF = (0.05, 0.1, 0.2, 0.25)
WORKER_REFRESH_S = 5.0
SHARE_REFRESH_S = 1.0
CLIENT_SCAN_S = 30.0
_COUNT_WORKERS = """
-- KEYS[1]: RQ's set of the queue's worker keys. Answers the names of those whose key is alive
-- (none when the key is not a set: someone else's write; the controller then keeps one worker).
local out = {}
if redis.call('TYPE', KEYS[1])['ok'] ~= 'set' then return out end
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', key) == 1 then out[#out + 1] = string.sub(key, 11) end
end
return out
"""


class Controller:
    """Runs one experiment to its end against a Redis and an RQ queue."""

    def __init__(
        self,
        client: redis.Redis,
        experiment: ExperimentCreated,
        options: ControllerOptions | None = None,
        *,
        on_progress: Callable[[StateBuilder], None] | None = None,
        on_entries: Callable[[list[tuple[str, bytes]]], None] | None = None,
        clock: Callable[[], float] = time.time,
        given: Collection[str] | None = None,
    ) -> None:
        self.client = client
        self.experiment = experiment
        self.given = given
        self.opts = options or ControllerOptions()
        self.keys = Keys(experiment.name)
        self.log = RedisLog(client, self.keys)
        self.lease = Lease(client, self.keys, ttl=self.opts.lease_ttl)
        self.queue = Queue(self.opts.queue, connection=client, serializer=SERIALIZER, job_class=JOB_CLASS)
        self._commit_script = client.register_script(COMMIT_SCRIPT)
        self.on_progress = on_progress
        self.on_entries = on_entries
        self._handed = 0
        self.clock = clock
        self.state = StateBuilder()
        self.last_id: str | None = None
        self._checked = 0.0
        self._missing: dict[tuple[int, int], float] = {}
        self._workers_cache: tuple[float, int] = (0.0, 0)
        self._share_cache: tuple[float, int] = (-1e9, 1)
        self._connected: tuple[float, set[str], set[str]] = (-1e9, set(), set())
        self._suspects = client.register_script(SUSPECTS_SCRIPT)
        self._count_workers = client.register_script(_COUNT_WORKERS)
        self.stop_event = threading.Event()
        self.conflicts = 0
        """Commits aborted because the log moved on (for benchmarks)."""

    # -- log ----------------------------------------------------------------------------------
    def replay(self) -> None:
        """Rebuild the state from the whole stream (renewing the lease between batches)."""
        self.state = StateBuilder()
        self.last_id = None
        self.catch_up()

    def catch_up(self) -> int:
        """Fold every entry after the last one folded; return how many."""
        before = self.state.events
        for batch in self.log.read_batches(self.last_id):
            self._fold(batch)
            if self.lease.value is not None:
                self.lease.renew()  # a long first replay must not lose the lease
        return self.state.events - before

    def _fold(self, entries: list[tuple[str, bytes]]) -> None:
        if entries:
            before = self.state.events
            self.state.add_records(unpack_records(entries))
            self.last_id = entries[-1][0]
            if self.on_entries is not None:
                # hand each log entry over once, even when a reconnect replays the stream
                fresh = entries[max(0, self._handed - before) :]
                self._handed = max(self._handed, before + len(entries))
                if fresh:
                    self.on_entries(fresh)

    # -- the one write path ---------------------------------------------------------------------
    def commit(self, decide: Callable[[], Decision | None]) -> bool:
        """Append what ``decide()`` returns, on exactly the log folded so far; True if appended.

        ``decide`` reads the current state and returns the event to append (with the proposal
        whose RQ job goes in the same transaction), or None when nothing is to be written any
        more. When the log moved on, the new entries are folded and ``decide`` is asked again;
        repeated conflicts back off. Returns False when ``decide`` said None or the controller
        was stopped.

        Raises:
            LeaseLostError: the lease is no longer ours.
            LogRegressedError: the stream lost what was folded and holds no experiment now.
        """
        round_ = 0
        while not self.stop_event.is_set():
            decision = decide()
            if decision is None:
                return False
            outcome = self._try_commit(*decision)
            if outcome == "ok":
                return True
            self.conflicts += 1
            if outcome == "regressed":
                self._on_regression()
            elif self.catch_up() == 0:
                # nothing new to fold, yet the transaction was aborted (a write to the lease
                # key, or a stream read that raced): back off before deciding again
                self.stop_event.wait(_CONFLICT_BACKOFF[min(round_, len(_CONFLICT_BACKOFF) - 1)])
                round_ += 1
        return False

    def _try_commit(self, event: Event, job: Proposal | None) -> str:
        """One attempt: ``"ok"``, ``"conflict"`` (the log moved on) or ``"regressed"``."""
        record = encode(event)
        commands: list[Any] = []
        n_commands = 0
        if job is not None:
            # RQ's own enqueue, recorded instead of sent: the script runs it with the append
            recorder = self.client.pipeline(transaction=False)
            self._enqueue(job, recorder)
            encode_arg: Callable[[Any], bytes] = self.client.connection_pool.get_encoder().encode
            for args, _options in recorder.command_stack:
                commands += [len(args), *(encode_arg(a) for a in args)]
                n_commands += 1
        answer = self._commit_script(
            keys=[self.keys.lease, self.keys.stream],
            args=[self.lease.value or b"", self.last_id or "", record, STREAM_FIELD, n_commands, *commands],
        )
        verdict = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
        if verdict == "lease":
            self.lease.check(None)
        if verdict == "corrupt":
            key, kind = (a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in answer[1:3])
            raise ControllerError(
                f"RQ's key {key!r} holds a {kind}, not what RQ keeps there: something else writes to "
                "this database; nothing was submitted (move evoq to its own database, or delete the key)"
            )
        if verdict != "ok":
            return verdict
        passed = [(stream_id(i), _entry_record(fields, i)) for i, fields in answer[2]]
        self._fold([*passed, (stream_id(answer[1]), record)])
        return "ok"

    def verify_log(self) -> None:
        """Check that the last entry folded is still in the stream; replay it if not.

        The commit checks this before every write; this check (once per check interval) also
        catches a stream that lost its tail while nothing was being written.
        """
        if self.last_id is None:
            return
        if not self.client.xrange(self.keys.stream, min=self.last_id, max=self.last_id, count=1):
            self._on_regression()

    def _on_regression(self) -> None:
        folded = self.state.events
        lost_from = self.last_id
        self._replay_or_fail(folded, lost_from)
        log.warning(
            "the log of %r lost its tail (had folded %d events up to %s, it now holds %d): replayed it",
            self.experiment.name,
            folded,
            lost_from,
            self.state.events,
        )

    def _replay_or_fail(self, folded: int, lost_from: str | None) -> None:
        """Replay from scratch; raise LogRegressedError when the log no longer holds this
        experiment (a Redis restarted empty, a deleted or foreign stream)."""
        self.replay()
        exp = self.state.experiment
        if exp is None or experiment_matches(exp, self.experiment, self.given):
            raise LogRegressedError(
                f"the log of experiment {self.experiment.name!r} in {self.opts.backend} lost the entries "
                f"this controller had folded ({folded} events up to {lost_from}) and no longer holds the "
                "experiment; restore it from an export or start it again"
            )

    def _enqueue(self, p: Proposal, pipe: Any) -> None:
        from workers.trial import make_payload

        st = self.state.strategy
        assert st is not None
        timeout = int(st.trial_timeout) if st.trial_timeout else -1
        payload = make_payload(
            self.experiment.name, p.trial, p.attempt, p.config, self.experiment.trial, self.opts.heartbeat_ttl
        )
        self.queue.enqueue_call(
            TRIAL_ENTRY,
            args=(payload,),
            job_id=self.keys.job_id(p.trial, p.attempt),
            timeout=timeout,
            result_ttl=self.opts.result_ttl,
            failure_ttl=self.opts.failure_ttl,
            description=f"evoq {self.experiment.name} trial {p.trial} attempt {p.attempt}",
            pipeline=pipe,
        )

    # -- setup --------------------------------------------------------------------------------
    def open(self) -> None:
        """Take the lease, replay the stream, create the experiment (in an empty stream) or
        check that the logged one is what was asked for, and extend its budget if asked to."""
        self.lease.acquire(wait=self.opts.wait_for_lease, stop=self.stop_event)
        self.replay()
        created = ExperimentCreated(
            self.experiment.name,
            self.experiment.space,
            self.experiment.strategy,
            self.experiment.seed,
            self.experiment.trial,
            self.experiment.evoq_version,
            self.clock(),
        )
        self.commit(lambda: (created, None) if self.state.events == 0 else None)
        exp = self.state.experiment
        if exp is None:
            self.lease.release()
            first = self.state.rejections[0] if self.state.rejections else None
            detail = f"; first rejected record {first.position}: {first.reason}" if first else ""
            raise ControllerError(
                f"the log of {self.experiment.name!r} in {self.opts.backend} holds {self.state.events} "
                f"records but no readable experiment_created record{detail}; restore it from an export, "
                f"or remove it with `evoq delete {self.experiment.name} --yes`"
            )
        diffs = experiment_matches(exp, self.experiment, self.given)
        if diffs:
            self.lease.release()
            raise ExperimentMismatchError(
                f"experiment {exp.name!r} already exists in {self.opts.backend} with another "
                f"{'; another '.join(diffs)}: run it as logged, or start a new one under another name "
                f"(--name) or after `evoq delete {exp.name} --yes`"
            )
        self._extend_if_asked()
        self.client.sadd(EXPERIMENTS, exp.name)

    def _extend_if_asked(self) -> None:
        st = self.state.strategy
        assert st is not None
        if self.given is not None and "cycles" not in self.given:
            return
        wanted = int(self.experiment.strategy.get("cycles", st.cycles))
        if wanted < st.cycles:
            log.warning(
                "experiment %r has cycles=%d (extended before); cycles=%d would lower it, and a budget "
                "is only ever raised: running to %d",
                self.experiment.name, st.cycles, wanted, st.cycles,
            )  # fmt: skip
        if wanted > st.cycles:
            event = ExperimentExtended(wanted, f"cycles raised from {st.cycles} to {wanted}", self.clock())
            current = self.state.strategy
            self.commit(lambda: (event, None) if self.state.strategy is current else None)
            log.info("experiment %r extended to cycles=%d", self.experiment.name, wanted)

    # -- workers and lost runs ----------------------------------------------------------------
    def live_workers(self) -> int:
        """This experiment's capacity: the RQ workers of its queue (counted every 5 s), or its
        fair share of them when other experiments submit to the same queue (every second)."""
        if self.opts.capacity is not None:
            return self.opts.capacity()
        now = time.monotonic()
        if now - self._workers_cache[0] >= WORKER_REFRESH_S:
            names = [
                n.decode() if isinstance(n, bytes) else str(n)
                for n in self._count_workers(keys=[self.queue.key.replace("rq:queue:", "rq:workers:", 1)])
            ]
            # Never 0: an under-count must not stall the evolve phase; an over-count only leaves
            # a job waiting in the queue.
            self._workers_cache = (now, max(len(self._connected_among(names, now)), 1))
        if now - self._share_cache[0] >= SHARE_REFRESH_S:
            self._share_cache = (now, self._share(self._workers_cache[1]))
        return self._share_cache[1]

    def _connected_among(self, names: list[str], now: float) -> list[str]:
        """The workers whose Redis connection is up, by the names of the connections (CLIENT
        LIST, at most every 30 s: it costs ~0.1 ms per client). A worker registered since the
        last look counts as connected; without CLIENT LIST (managed Redis), all count."""
        seen_at, connected, known = self._connected
        if now - seen_at >= CLIENT_SCAN_S:
            try:
                clients: Any = self.client.client_list()
                connected = {str(c.get("name")) for c in clients}
            except redis.ResponseError:  # managed Redis may forbid CLIENT LIST
                connected = set(names)
            known = set(names)
            self._connected = (now, connected, known)
        return [n for n in names if n in connected or n not in known]

    def _share(self, workers: int) -> int:
        """Register this experiment on its queue and take its share of the queue's workers."""
        key = queue_controllers(self.opts.queue)
        stamp = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(key, {self.experiment.name: stamp})
        pipe.zremrangebyscore(key, "-inf", stamp - 3 * max(self.opts.lease_ttl, WORKER_REFRESH_S))
        pipe.zrange(key, 0, -1)
        active = [n.decode() if isinstance(n, bytes) else str(n) for n in pipe.execute()[2]]
        return fair_share(workers, active, self.experiment.name)

    def probe(self, runs: list[Run]) -> list[JobProbe]:
        """One atomic look at the runs' jobs: status and heartbeat, answered only for the runs that
        are not started and beating; then the queue position of those still queued."""
        keys: list[str] = []
        for r in runs:
            keys += [
                Job.key_for(self.keys.job_id(r.trial, r.attempt)),
                self.keys.heartbeat(r.trial, r.attempt),
            ]
        answer: Any = self._suspects(keys=keys)
        probes = [JobProbe("started", None, True)] * len(runs)
        queued = []
        for k in range(0, len(answer), 3):
            i, raw, beating = int(answer[k]) - 1, answer[k + 1], bool(answer[k + 2])
            status = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            probes[i] = JobProbe(status or None, None, beating)
            if status == "queued":
                queued.append(i)
        if queued:
            pipe = self.client.pipeline(transaction=False)
            for i in queued:
                pipe.lpos(self.queue.key, self.keys.job_id(runs[i].trial, runs[i].attempt))
            for i, pos in zip(queued, pipe.execute(raise_on_error=False), strict=True):
                # a queue key that is not a list (someone else's write) holds no job
                found = pos is not None and not isinstance(pos, redis.ResponseError)
                probes[i] = JobProbe("queued", found, probes[i].beating)
        return probes

    def check_runs(self) -> None:
        """Declare lost the runs whose job vanished, ended unreported, or stopped heartbeating."""
        runs = list(self.state.running.values())
        if not runs:
            self._missing.clear()
            return
        probes = self.probe(runs)
        self.catch_up()  # statuses first, then the log: an event written before its job ended is seen
        now = time.monotonic()
        timers: dict[tuple[int, int], float] = {}
        for r, p in zip(runs, probes, strict=True):
            current = self.state.running.get(r.trial)
            if current is None or current.attempt != r.attempt:
                continue
            key = (r.trial, r.attempt)
            job_id = self.keys.job_id(r.trial, r.attempt)
            v = judge(
                job_id,
                current.worker,
                p,
                since=self._missing.get(key),
                now=now,
                heartbeat_ttl=self.opts.heartbeat_ttl,
            )
            if v.reason is None:
                if v.since is not None:
                    timers[key] = v.since
                continue
            reason = v.reason + (self._failure_detail(job_id) if p.status == "failed" else "")
            self.declare_lost(current, reason)
        self._missing = timers

    def _failure_detail(self, job_id: str) -> str:
        """The last line of the traceback RQ kept for a failed job ("" if none), read with a
        bounded inflate: the result entry is anyone's write, and may be a zlib bomb."""
        try:
            entries: Any = self.client.xrevrange(f"rq:results:{job_id}", count=1)
            raw = entries[0][1].get(b"exc_string") if entries else None
            if not isinstance(raw, bytes) or len(raw) > 1 << 20:
                return ""
            from workers.job import inflate_at_most

            # over 64 KiB inflated: dropped (its last line would not be the exception's)
            inflated = inflate_at_most(base64.b64decode(raw), 1 << 16)
            if inflated is None:
                return ""
            text = inflated.decode(errors="replace")
        except Exception:  # the detail is a courtesy; never let it stop the controller
            return ""
        last = [line for line in text.strip().splitlines() if line.strip()]
        return f": {last[-1].strip()[:300]}" if last else ""

    def declare_lost(self, r: Run, reason: str) -> bool:
        """Append ``TrialFailed(kind="lost")`` for a run, if it is still running."""
        event = TrialFailed(r.trial, r.attempt, "lost", reason, r.worker or "", self.clock())

        def decide() -> Decision | None:
            current = self.state.running.get(r.trial)
            return (event, None) if current is not None and current.attempt == r.attempt else None

        if self.commit(decide):
            log.warning("trial %d attempt %d lost: %s", r.trial, r.attempt, reason)
            # a worker that resurfaces must not go on with it (a command trial's process group
            # ends with its work horse)
            self._stop_job(self.keys.job_id(r.trial, r.attempt))
            return True
        return False

    # -- the loop -----------------------------------------------------------------------------
    def _next_submission(self) -> Decision | None:
        st = self.state.strategy
        assert st is not None
        capacity = self.live_workers() + st.prefetch
        if not may_submit(self.state, capacity):
            return None
        p = propose(self.state)
        if p is None:
            return None
        return TrialSubmitted(p.trial, p.attempt, p.config, p.parent, p.phase, p.note, self.clock()), p

    def submit_ready(self) -> int:
        """Submit proposals while there is capacity; return how many were submitted."""
        n = 0
        while self.commit(self._next_submission):
            n += 1
        return n

    def finish_if_due(self) -> bool:
        """Append ``ExperimentFinished`` when the state says the experiment is over; True when
        the experiment is finished (now or before)."""

        in_flight: list[Run] = []

        def decide() -> Decision | None:
            b = self.state
            status = status_of(b)
            if b.finished is not None or status not in ("completed", "failed"):
                return None
            in_flight[:] = b.running.values()
            return ExperimentFinished(status, finish_reason(b), self.clock()), None

        if self.commit(decide):
            self.stop_jobs(in_flight)
        return self.state.finished is not None

    def stop_jobs(self, runs: list[Run], *, recheck: float = 1.0) -> int:
        """Cancel the queued jobs of ``runs`` and tell the workers running the others to stop
        them (rq's stop-job command); return how many were reached.

        A worker may take a job off the queue just as it is cancelled and start it anyway: the
        cancelled jobs are looked at again after ``recheck`` seconds, and any that started is
        stopped. Best effort: a job that already ended, or a worker that does not listen
        (SimpleWorker), is left alone; its report is ignored, the experiment having ended.
        """
        reached, cancelled = 0, []
        for r in runs:
            job_id = self.keys.job_id(r.trial, r.attempt)
            outcome = self._stop_job(job_id)
            reached += outcome is not None
            if outcome == "canceled":
                cancelled.append(job_id)
        if cancelled and recheck > 0:
            self.stop_event.wait(recheck)  # a stop request cuts the wait short
            for job_id in cancelled:
                self._stop_job(job_id, cancel=False)
        if reached:
            log.info("experiment %r ended: stopped %d of its jobs", self.experiment.name, reached)
        return reached

    def _stop_job(self, job_id: str, *, cancel: bool = True) -> str | None:
        try:
            job = fetch_job(self.client, job_id)
            status = job.get_status(refresh=False)
            if cancel and status in ("queued", "deferred", "scheduled"):
                job.cancel()
                return "canceled"
            if status == "started" and job.worker_name:
                send_stop_job_command(self.client, job_id, serializer=SERIALIZER)
                return "stopped"
        except (NoSuchJobError, InvalidJobOperation):
            return None
        except redis.RedisError as exc:
            log.warning("could not stop job %s: %s", job_id, exc)
        except Exception as exc:  # a job hash someone else wrote: never stop the controller for it
            log.warning("could not stop job %s (%s: %s)", job_id, type(exc).__name__, str(exc)[:200])
        return None

    def step(self) -> bool:
        """One round: renew, check runs, submit, then block for new events. True when finished."""
        self.lease.renew()
        now = time.monotonic()
        if now - self._checked >= self.opts.check_interval:
            self.verify_log()
            self.check_runs()
            self._checked = now
        if self.finish_if_due():
            return True
        self.submit_ready()
        if self.finish_if_due():
            return True
        self.await_events()
        if self.on_progress is not None:
            self.on_progress(self.state)
        return False

    def await_events(self) -> None:
        """Block on the stream (XREAD BLOCK) until new entries or the check interval; fold them."""
        timeout = min(self.opts.check_interval, self.opts.lease_ttl / 3)
        self._fold(self.log.wait(self.last_id, int(timeout * 1000)))

    def run(self) -> State:
        """Run the experiment until it finishes or :meth:`stop` is called; return the state."""
        opened = broken = False
        failures = 0
        try:
            while not self.stop_event.is_set():
                try:
                    if not opened:
                        self.open()
                        opened = True
                        if self.on_progress is not None:
                            self.on_progress(self.state)
                    elif broken:
                        self._recover()
                        broken = False
                    if self.step():
                        break
                    failures = 0
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # retry promptly: PING is cheap, and every second waited after Redis is back
                    # is a second of idle workers
                    delay = _RECONNECT_BACKOFF[min(failures, len(_RECONNECT_BACKOFF) - 1)]
                    if failures == 0:
                        log.warning(
                            "Redis unreachable (%s); retrying every %.2fs", exc, _RECONNECT_BACKOFF[-1]
                        )
                    failures += 1
                    broken = True
                    if self.stop_event.wait(delay):
                        break
            if opened and not broken and self.opts.preempt_on_stop and self.state.finished is None:
                self.preempt_in_flight("interrupted by the user")
            if opened and self.on_progress is not None:
                self.on_progress(self.state)  # the final state (a finishing step returns before it)
        finally:
            if self.opts.capacity is None:
                with contextlib.suppress(redis.RedisError):  # no longer a taker of this queue's workers
                    self.client.zrem(queue_controllers(self.opts.queue), self.experiment.name)
            self.lease.release()
        return self.state.freeze()

    def preempt_in_flight(self, reason: str) -> int:
        """Record every run in flight as ``preempted`` (it runs again as a new attempt)."""
        n = 0
        for r in list(self.state.running.values()):
            event = TrialFailed(r.trial, r.attempt, "preempted", reason, r.worker or "", self.clock())

            def decide(r: Run = r, event: TrialFailed = event) -> Decision | None:
                current = self.state.running.get(r.trial)
                return (event, None) if current is not None and current.attempt == r.attempt else None

            self.stop_event.clear()  # commit() returns at once while stopped
            try:
                n += self.commit(decide)
            finally:
                self.stop_event.set()
        return n

    def _recover(self) -> None:
        """After Redis came back: make sure the lease is still ours, then replay from scratch
        (a restarted Redis may have lost its last second of writes). Timers of suspicious runs
        start again: a run must not be declared lost for time Redis was away."""
        self.client.ping()
        self.lease.reclaim()
        self._missing.clear()
        self._workers_cache = (0.0, 0)
        self._share_cache = (-1e9, 1)
        self._connected = (-1e9, set(), set())
        self._replay_or_fail(self.state.events, self.last_id)
        log.info("Redis is back; replayed %d events", self.state.events)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step (thread- and signal-safe)."""
        self.stop_event.set()
