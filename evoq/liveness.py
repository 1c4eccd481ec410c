"""Liveness of trial runs: the lost-run decision table, as a pure function of a snapshot.

The controller reads, in one Lua script (one atomic snapshot), what Redis says about each
running trial's RQ job (a :class:`JobProbe`), then folds the log, then asks :func:`judge` about
each run still running. ``judge`` needs no Redis and no clock of its own: it is given the time
and the moment the run was first seen in a suspicious state (``since``), and returns the verdict
with the timer to keep. The table:

=====================================  ===================================================
what Redis says                        verdict
=====================================  ===================================================
no job hash                            lost at once: the job is gone
queued/deferred/scheduled, in queue    alive
queued, taken off the queue by a       alive for ``heartbeat_ttl`` (a worker took it and
worker but not started (in rq's        is about to start it: BLPOP leaves it in no list,
intermediate list, or in no list)      LMOVE in the intermediate one), then lost
started, heartbeat key present         alive
started, no heartbeat                  alive for ``min(2 s, heartbeat_ttl)`` (the first
                                       beat may be on its way), then lost
finished/failed/stopped/canceled       lost at once: it ended without reporting (the log
                                       was read *after* the statuses, so an outcome written
                                       before the job ended has been folded already)
=====================================  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass

ALIVE_STATUSES = frozenset({"queued", "deferred", "scheduled"})
STARTED_GRACE = 2.0
"""Seconds a started run may go without a heartbeat key before its first beat must be there."""


@dataclass(frozen=True, slots=True)
class JobProbe:
    """What Redis says about one run's RQ job, read in one snapshot.

    Attributes:
        status: the job hash's ``status`` field, or None when the hash is gone.
        in_queue: the job id is in its queue's list (None: not looked at).
        beating: the run's heartbeat key exists.
    """

    status: str | None
    in_queue: bool | None
    beating: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """:func:`judge`'s answer: why the run is lost (None: it is not), and the timer to keep."""

    reason: str | None
    since: float | None


def judge(
    job_id: str, worker: str | None, probe: JobProbe, *, since: float | None, now: float, heartbeat_ttl: float
) -> Verdict:
    """Decide whether one run is lost (see the module's table).

    Args:
        job_id: the run's RQ job id (for the message).
        worker: the worker that started it, if known (for the message).
        probe: the snapshot of its job.
        since: when this run was first seen in a state that is only fine for a while (None: it
            was not).
        now: the current time, on the same clock as ``since``.
        heartbeat_ttl: seconds a worker may stay silent.
    """
    status = probe.status
    if status is None:
        return Verdict(f"RQ job {job_id} is gone", None)
    if status in ALIVE_STATUSES:
        if status != "queued" or probe.in_queue is not False:
            return Verdict(None, None)
        start = now if since is None else since
        if now - start < heartbeat_ttl:
            return Verdict(None, start)  # a worker took it off the queue and is about to start it
        return Verdict(
            f"RQ job {job_id} was taken off its queue but not started for {heartbeat_ttl:g}s "
            "(the worker that took it died, or the queue was lost)",
            start,
        )
    if status == "started":
        if probe.beating:
            return Verdict(None, None)
        start = now if since is None else since
        if now - start < min(STARTED_GRACE, heartbeat_ttl):
            return Verdict(None, start)
        return Verdict(f"worker {worker or '?'} stopped heartbeating (no beat for {heartbeat_ttl:g}s)", start)
    return Verdict(f"RQ job {job_id} ended {status} without reporting", None)


def fair_share(workers: int, active: list[str], me: str) -> int:
    """This experiment's share of the workers of a queue shared by the ``active`` experiments.

    ``workers // n`` each, the remainder going one by one to the first experiments by name, so
    the shares add up to ``workers`` exactly; at least 1 (an experiment never stalls). An
    experiment missing from ``active`` (not registered yet) counts itself in.
    """
    names = sorted(set(active) | {me})
    n = len(names)
    base, extra = divmod(max(workers, 1), n)
    return max(1, base + (1 if names.index(me) < extra else 0))


SUSPECTS_SCRIPT = """
-- KEYS: per run, its job hash and its heartbeat key. Answers, for each run that is not STARTED
-- with a live heartbeat (the common case, left out), its index, job status ('' if gone) and
-- whether its heartbeat key exists.
local out = {}
for i = 1, #KEYS, 2 do
  local status = redis.pcall('HGET', KEYS[i], 'status')
  if type(status) == 'table' and status['err'] then  -- WRONGTYPE: someone else's write
    status = 'overwritten (not a job hash)'
  end
  local beating = redis.call('EXISTS', KEYS[i + 1])
  if not (status == 'started' and beating == 1) then
    out[#out + 1] = (i + 1) / 2
    out[#out + 1] = status or ''
    out[#out + 1] = beating
  end
end
return out
"""
"""The runs worth a closer look, read in one atomic step whose answer does not grow with the
number of healthy runs."""
