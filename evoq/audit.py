"""Whole-log checks: the streaming audit, and the invariants of a finished experiment.

:func:`audit_entries` / :func:`audit_file` audit a log in one streaming pass: chain, schema,
decisions, terminal events, end status. :func:`check_invariants` checks a finished experiment's
log as a whole (used by the integration tests and ``scripts/fault_campaign.py``).

What :func:`audit` checks, record by record:

* **chain and schema** — the file's hash chain (format 2: every record bound to all before it,
  back to the creation record) and CRCs (format 1) are checked by :class:`~evoq.filelog.FileLog`
  as it reads; every record must decode under a known schema version. The first bad record
  stops the audit (nothing after it can be trusted) and is reported with its offset.
* **decisions** — every accepted ``TrialSubmitted`` must be exactly what
  :func:`~evoq.proposal.propose` derives from the experiment's parameters, seed, trial index and
  the state replayed up to that record. The first divergence is reported with the trial, the
  field, the logged and the expected value.
* **terminal events** — each belongs to a submitted run; only the first of a run counts (later
  ones are counted as ignored duplicates, which is not an error).
* **end** — an ``ExperimentFinished`` status must follow from the log (``completed`` when the
  results reached ``cycles``, ``failed`` after ``max_failures`` failures in a row).

What the chain protects against: a log changed after it was written to the file — a record
edited, dropped, inserted or reordered, by accident or on purpose — is caught at that record.
Someone who rewrites the file *and* recomputes every digest after the change is caught only by
what follows from the content: a changed config or parent breaks decision re-derivation at
once; a changed metric is caught where it changes a later decision or the end status. Comparing
the chain head (``--expect-head``) with one recorded elsewhere (``evoq export`` prints it)
catches any rewrite. The live Redis stream is not chained: keep Redis private.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .codec import CodecError, check_record
from .events import Event, ExperimentFinished, TrialCompleted, TrialFailed, TrialSubmitted
from .filelog import FileLog, FrameError, TornTailWarning
from .log import unpack_records
from .proposal import propose
from .reducer import InvalidLogError, StateBuilder, status_of
from .report import _plain


@dataclass
class Finding:
    """One problem found, located by record number (0-based) and log position."""

    record: int
    position: Any
    kind: str  # corrupt | schema | rejected | decision | terminal | finish | truncated | head | empty
    message: str
    trial: int | None = None
    field: str | None = None
    logged: Any = None
    expected: Any = None


@dataclass
class AuditReport:
    """The outcome of :func:`audit`."""

    records: int = 0
    chain: str = "unchecked"
    head: str | None = None
    decisions_checked: int = 0
    ignored_submissions: int = 0
    ignored_terminal: int = 0
    rejected: int = 0
    status: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (values made plain)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["findings"] = [{k: _plain(v) for k, v in f.items()} for f in data["findings"]]
        return data


_FIELDS = ("trial", "attempt", "config", "parent", "phase")


def audit_entries(entries: Iterable[tuple[Any, bytes]], report: AuditReport | None = None) -> AuditReport:
    """Audit ``(position, record bytes)`` entries in log order (see the module docstring)."""
    rep = report if report is not None else AuditReport()
    b = StateBuilder()
    ever: set[tuple[int, int]] = set()
    n = -1
    pos: Any = None
    try:
        for n, (pos, raw) in enumerate(unpack_records(entries)):
            try:
                rec: tuple[Any, ...] | None = check_record(raw, offset=pos)
            except CodecError:
                rec = None
            tag = rec[0] if rec is not None and b.experiment is not None else None
            rejected = b.rejected
            if tag == "trial_submitted":
                assert rec is not None
                e = TrialSubmitted(*rec[2:])
                due = propose(b)
                before = b.running.get(e.trial)
                b.add_records([(pos, rec)])
                run = b.running.get(e.trial)
                if run is None or run is before:
                    rep.ignored_submissions += 1
                    continue
                ever.add((e.trial, e.attempt))
                rep.decisions_checked += 1
                finding = _compare(n, pos, e, due, b)
                if finding is not None:
                    rep.findings.append(finding)
                    return rep
            elif tag in ("trial_completed", "trial_failed"):
                assert rec is not None
                t: TrialCompleted | TrialFailed = (
                    TrialCompleted if tag == "trial_completed" else TrialFailed
                )(*rec[2:])
                before = b.running.get(t.trial)
                b.add_records([(pos, rec)])
                if (t.trial, t.attempt) not in ever:
                    rep.findings.append(
                        Finding(
                            n,
                            pos,
                            "terminal",
                            f"{tag} for trial {t.trial} attempt {t.attempt}, which was never submitted",
                            t.trial,
                        )
                    )
                    return rep
                if before is None or before.attempt != t.attempt:
                    rep.ignored_terminal += 1
            elif tag == "experiment_finished":
                assert rec is not None
                f = ExperimentFinished(*rec[2:])
                due_status = status_of(b) if b.finished is None else None
                b.add_records([(pos, rec)])
                if due_status is not None and f.status != due_status:
                    rep.findings.append(
                        Finding(
                            n,
                            pos,
                            "finish",
                            f"experiment_finished says {f.status!r} but the log says {due_status!r}",
                            logged=f.status,
                            expected=due_status,
                        )
                    )
                    return rep
            else:
                b.add_records([(pos, rec if rec is not None else raw)])
            if b.rejected != rejected and b.last_rejection is not None:
                # the fold skipped it, as every controller did: report it and audit the rest
                rep.rejected += 1
                reason = b.last_rejection.reason
                rep.findings.append(Finding(n, pos, "rejected", f"record rejected by the fold: {reason}"))
    except (CodecError, InvalidLogError) as exc:
        kind = "corrupt" if isinstance(exc, FrameError) else "schema"
        offset = getattr(exc, "offset", None)
        rep.findings.append(Finding(n + 1, offset if offset is not None else pos, kind, str(exc)))
    finally:
        rep.records = n + 1
        rep.status = status_of(b) if b.experiment is not None else None
    if b.experiment is None and not any(f.kind in ("corrupt", "schema") for f in rep.findings):
        rep.findings.append(
            Finding(
                rep.records, None, "empty", "the log holds no experiment_created record: nothing to audit"
            )
        )
    return rep


def _compare(n: int, pos: Any, e: TrialSubmitted, due: Any, b: StateBuilder) -> Finding | None:
    if due is None:
        return Finding(
            n,
            pos,
            "decision",
            f"trial {e.trial} was submitted but no trial was due (status {status_of(b)!r})",
            e.trial,
        )
    for name in _FIELDS:
        logged, expected = getattr(e, name), getattr(due, name)
        if name == "config":
            logged, expected = dict(logged), dict(expected)
        if logged != expected:
            return Finding(
                n,
                pos,
                "decision",
                f"trial {e.trial}: logged {name} differs from the one the algorithm derives",
                e.trial,
                name,
                logged,
                expected,
            )
    return None


def audit_file(path: str, *, expect_head: str | None = None) -> AuditReport:
    """Audit a log file; a torn last record and a head other than ``expect_head`` are findings."""
    log = FileLog(path)
    rep = AuditReport(chain="verified" if log.format().chained else "absent (format 1 file: CRCs only)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TornTailWarning)
        audit_entries(log.read(), rep)
    if any(f.kind == "corrupt" for f in rep.findings):
        rep.chain = "broken"
    if log.torn_tail is not None and all(f.kind == "empty" for f in rep.findings):
        rep.findings = []  # a log cut short at its first record: say where, not just "empty"
    if log.torn_tail is not None and not rep.findings:
        rep.findings.append(
            Finding(
                rep.records,
                log.torn_tail,
                "truncated",
                f"the last record (offset {log.torn_tail}) is cut short or damaged",
            )
        )
    del caught
    rep.head = log.head.hex() if log.head is not None else None
    if expect_head is not None and rep.head != expect_head.lower() and not rep.findings:
        rep.findings.append(
            Finding(rep.records, None, "head", f"chain head {rep.head} is not the expected {expect_head}")
        )
    return rep


def iter_events_until(
    entries: Iterable[tuple[Any, bytes]], *, until: int | None = None, at: float | None = None
) -> Iterator[tuple[Any, Any]]:
    """Unpacked records of the log prefix: the first ``until`` records, and/or those before the
    first record stamped later than ``at``."""
    for n, (pos, raw) in enumerate(unpack_records(entries)):
        if until is not None and n >= until:
            return
        if at is not None:
            try:
                rec = check_record(raw, offset=pos)
            except CodecError:
                yield pos, raw  # no time stamp to read: the fold rejects it
                continue
            if rec[-1] > at:
                return
            yield pos, rec
            continue
        yield pos, raw


def prefix_state(path: str, *, until: int | None = None, at: float | None = None) -> StateBuilder:
    """The state after a prefix of a log file (see :func:`iter_events_until`)."""
    b = StateBuilder()
    b.add_records(iter_events_until(FileLog(path).read(), until=until, at=at))
    return b


# -- whole-log invariants ---------------------------------------------------------------------
def accepted_submissions(events: Iterable[Event]) -> list[TrialSubmitted]:
    """The submissions the reducer accepted (duplicates and foreign ones left out)."""
    b = StateBuilder()
    return [e for e in events if b.add_judged(e) and isinstance(e, TrialSubmitted)]


def counted_terminals(
    events: Iterable[Event],
) -> list[tuple[int, TrialCompleted | TrialFailed, TrialSubmitted]]:
    """``(index, terminal event, its submission)`` for every terminal event that counted."""
    b = StateBuilder()
    subs: dict[tuple[int, int], TrialSubmitted] = {}
    out = []
    for n, e in enumerate(events):
        if not b.add_judged(e):
            continue
        if isinstance(e, TrialSubmitted):
            subs[(e.trial, e.attempt)] = e
        elif isinstance(e, TrialCompleted | TrialFailed):
            out.append((n, e, subs[(e.trial, e.attempt)]))
    return out


def check_invariants(events: Iterable[Event], *, expect_status: str | None = "completed") -> list[str]:
    """Violations found in a log (empty when it is sound).

    Checked: the experiment ended with ``expect_status``; for a completed one, results equal
    ``cycles``; no run is still in flight; every accepted submission ``(trial, attempt)`` is
    unique and ended with exactly one terminal event that counted; every attempt of a trial
    carries the same config; attempts of a trial follow 0, 1, 2, ... .
    """
    b = StateBuilder()
    violations: list[str] = []
    accepted: Counter[tuple[int, int]] = Counter()
    counted: Counter[tuple[int, int]] = Counter()
    configs: dict[int, object] = {}
    for e in events:
        took = b.add_judged(e)
        if took and isinstance(e, TrialSubmitted):
            accepted[(e.trial, e.attempt)] += 1
            if e.attempt == 0:
                configs[e.trial] = e.config
            elif configs.get(e.trial) != e.config:
                violations.append(f"trial {e.trial} attempt {e.attempt} has another config than attempt 0")
        elif took and isinstance(e, TrialCompleted | TrialFailed):
            counted[(e.trial, e.attempt)] += 1
    for run, n in accepted.items():
        if n != 1:
            violations.append(f"trial {run[0]} attempt {run[1]} submitted {n} times")
        if counted[run] != 1:
            violations.append(f"trial {run[0]} attempt {run[1]} has {counted[run]} counted terminal events")
    attempts: dict[int, list[int]] = {}
    for t, a in sorted(accepted):
        attempts.setdefault(t, []).append(a)
    for t, seq in attempts.items():
        if seq != list(range(len(seq))):
            violations.append(f"trial {t} attempts {seq} are not 0..n")
    if b.running or b.retry:
        violations.append(f"runs still in flight: {sorted(b.running)} retry {sorted(b.retry)}")
    status = b.finished.status if b.finished else None
    if expect_status is not None and status != expect_status:
        violations.append(f"experiment status {status!r}, expected {expect_status!r}")
    if status == "completed" and b.strategy is not None and b.results != b.strategy.cycles:
        violations.append(f"results {b.results} != cycles {b.strategy.cycles}")
    return violations
