"""The dashboard's pure parts: the incremental fold it keeps and the view models built from it."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from evoq.audit import AuditReport, Finding
from evoq.codec import decode
from evoq.dashboard import views
from evoq.dashboard.watch import Heartbeat, Watcher, WorkerInfo
from evoq.events import TrialCompleted, TrialFailed
from evoq.filelog import FileLog
from evoq.report import TrialTable, summary, trial_rows
from evoq.sources import file_source

GOLDEN = sorted((Path(__file__).resolve().parent.parent / "golden").glob("*.evoqlog"))
SCHEMA2 = Path(__file__).resolve().parent.parent / "golden" / "schema2-file2.evoqlog"


def folded(path: Path) -> Watcher:
    """A watcher that folded the whole log at ``path`` (no thread following it)."""
    w = Watcher("embedded", "t", FileLog(path))
    w.fold(list(FileLog(path).read()))
    w.audit.close()
    return w


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_the_dashboard_fold_is_the_fold_of_every_other_command(path):
    loaded = file_source(path).load()
    w = folded(path)
    assert summary(w.table.builder.freeze()) == summary(loaded.state)
    expected = trial_rows(loaded.events)
    assert {t: r.to_json() for t, r in w.table.rows.items()} == {t: r.to_json() for t, r in expected.items()}
    # one point per counted end of a run, completions carrying their metric
    counted = [p for p in w.points if p.kind == ""]
    assert len(counted) == loaded.state.completed
    assert all(p.metric is not None and math.isfinite(p.metric) for p in counted)
    assert len(w.points) - len(counted) == loaded.state.failed_total


def test_trial_table_keeps_the_attempts_a_later_attempt_replaced():
    events = [decode(d) for _, d in FileLog(SCHEMA2).read()]
    table = TrialTable()
    for e in events:
        table.add(e)
    assert table.rows[14].attempt == 2
    assert [r.attempt for r in table.earlier[14]] == [0, 1]
    assert all(r.status == "retry" and r.message for r in table.earlier[14])
    assert set(table.earlier) == {t for t, r in table.rows.items() if r.attempt > 0}


def test_fold_in_pieces_equals_fold_at_once():
    entries = list(FileLog(SCHEMA2).read())
    whole = folded(SCHEMA2)
    w = Watcher("embedded", "t", FileLog(SCHEMA2))
    for i in range(0, len(entries), 7):
        w.fold(entries[i : i + 7])
    w.audit.close()
    assert summary(w.table.builder.freeze()) == summary(whole.table.builder.freeze())
    assert w.points == whole.points and w.children == whole.children
    assert w.version == 1 + math.ceil(len(entries) / 7)


def test_rejected_records_are_counted_as_every_reader_counts_them():
    entries = list(FileLog(SCHEMA2).read())
    garbled = [*entries[:5], (999_999, b"\xc1not msgpack"), *entries[5:]]
    w = Watcher("embedded", "t", FileLog(SCHEMA2))
    w.fold(garbled)
    w.audit.close()
    state = w.table.builder.freeze()
    assert state.rejected == 1 and state.rejections[0].position == 999_999
    assert state.events == len(garbled)


def test_rate_and_eta_from_the_last_results():
    samples = [(1000.0 + 2 * i, i + 1) for i in range(10)]  # one result every 2 s
    rate, eta = views.rate_and_eta(samples, 10, 30, "running")
    assert rate == pytest.approx(0.5)
    assert eta == pytest.approx(40.0)
    assert views.rate_and_eta(samples, 10, 30, "completed") == (pytest.approx(0.5), None)
    assert views.rate_and_eta(samples[:1], 1, 30, "running") == (None, None)


def test_progress_view_shows_the_incumbent_with_its_evaluation_count():
    data = summary(folded(SCHEMA2).table.builder.freeze())
    p = views.progress_view(data, [], now=0.0)
    assert p["results"] == 40 and p["cycles"] == 40 and p["percent"] == 100.0
    assert p["best"] == {"trial": 20, "metric": "284"}
    # a log without re-evaluation: the incumbent is the best single result, evaluated once
    assert p["incumbent"] == [("trial", "20"), ("metric", "284"), ("evaluations", "1")] and p["eta"] == "done"
    data["incumbent"] = None
    assert views.progress_view(data, [], now=0.0)["incumbent"] is None
    data["incumbent"] = {"trial": 20, "metric": 283.5, "evaluations": 3, "config": {"op": "conv"}}
    pairs = views.progress_view(data, [], now=0.0)["incumbent"]
    assert pairs == [("trial", "20"), ("metric", "283.5"), ("evaluations", "3")]


def test_running_view_tells_heartbeat_age_and_flags_a_late_one():
    in_flight = [
        {
            "trial": 3,
            "attempt": 0,
            "phase": "init",
            "worker": "gpu0",
            "submitted_at": 90.0,
            "started_at": 95.0,
        },
        {
            "trial": 4,
            "attempt": 1,
            "phase": "evolve",
            "worker": "gpu1",
            "submitted_at": 90.0,
            "started_at": 96.0,
        },
        {
            "trial": 5,
            "attempt": 0,
            "phase": "evolve",
            "worker": None,
            "submitted_at": 98.0,
            "started_at": None,
        },
    ]
    beats = {(3, 0): Heartbeat(9.2, 10.0, "evoq"), (4, 1): Heartbeat(1.0, 10.0, "evoq")}
    rows = views.running_view(in_flight, beats, now=100.0)
    assert [(r["trial"], r["state"], r["elapsed"], r["heartbeat"], r["late"]) for r in rows] == [
        (3, "running", "5s", "0.8s ago", False),
        (4, "running", "4s", "9.0s ago", True),
        (5, "queued", "2s", "-", False),
    ]
    assert views.running_view(in_flight[:1], {}, now=100.0)[0]["heartbeat"] == "none"  # key gone
    assert views.running_view(in_flight[:1], None, now=100.0)[0]["heartbeat"] == "n/a"  # not visible


def test_workers_view_names_the_trials_each_worker_runs():
    w = WorkerInfo("gpu0", "busy", "box1", 42, ("evoq",), 99.0, 40.0, 7, 1)
    in_flight = [{"trial": 3, "attempt": 0, "worker": "gpu0", "started_at": 95.0}]
    (row,) = views.workers_view([w], in_flight, now=100.0)
    assert row["trials"] == [3] and row["seen"] == "1s ago" and row["up"] == "1m 00s"
    assert row["jobs"] == "7 ok, 1 failed"


def test_failures_view_counts_by_kind_and_lists_newest_first():
    data = summary(folded(SCHEMA2).table.builder.freeze())
    f = views.failures_view(data)
    assert f["total"] == 14
    assert f["by_kind"][0] == ("error", 4) and dict(f["by_kind"])["lost"] == 1
    assert [(x["trial"], x["attempt"]) for x in f["recent"][:2]] == [(35, 0), (33, 0)]
    assert f["recent"][0]["first_line"] == "boom"


def test_lineage_view_walks_from_the_best_to_a_random_init_with_each_mutation():
    w = folded(SCHEMA2)
    line = views.lineage_view(w.table.rows, 20)
    assert [t["trial"] for t in line] == [20, 12, 5]
    assert line[-1]["phase"] == "init" and line[-1]["parent"] is None
    rows = w.table.rows
    for child, parent in itertools.pairwise(line):
        changed = {k for k, a, b in child["mutated"]}
        assert changed == {
            k for k, v in rows[child["trial"]].config.items() if rows[parent["trial"]].config[k] != v
        }
        assert changed


def test_trial_view_has_config_parent_children_and_every_attempt():
    w = folded(SCHEMA2)
    b = w.table.builder
    population = [i.trial for i in b.population]
    t = views.trial_view(
        14, w.table.rows, w.table.earlier, w.children,
        failure_kinds=w.failure_kinds, population=population, best=20, now=0.0,
    )  # fmt: skip
    assert t is not None
    assert t["parent"] == 5 and t["status"] == "completed" and t["metric"] == "275"
    assert [a["attempt"] for a in t["attempts"]] == [0, 1, 2]
    kinds = [w.failure_kinds[(14, a)] for a in (0, 1)]
    assert [a["status"] for a in t["attempts"]] == [f"{k}, ran again" for k in kinds] + ["completed"]
    assert all(a["message"] == "boom" for a in t["attempts"][:2])
    assert [k for k, v, changed in t["config"]] == list(w.table.rows[14].config)
    best = views.trial_view(
        12, w.table.rows, w.table.earlier, w.children, population=population, best=20, now=0.0
    )
    assert best is not None and {c["trial"] for c in best["children"]} >= {16, 18, 19, 20, 21, 22}
    assert (
        views.trial_view(999, w.table.rows, w.table.earlier, w.children, population=[], best=None, now=0.0)
        is None
    )


def test_children_are_the_trials_naming_the_parent():
    w = folded(SCHEMA2)
    expected: dict[int, list[int]] = {}
    for t, r in sorted(w.table.rows.items()):
        if r.parent is not None:
            expected.setdefault(r.parent, []).append(t)
    assert w.children == expected


def test_audit_view_is_clean_checking_or_the_first_finding():
    rep = AuditReport(chain="verified", decisions_checked=12)
    assert views.audit_view(rep, checked=50, fed=50, finished=False)["state"] == "clean"
    assert views.audit_view(rep, checked=20, fed=50, finished=False)["state"] == "checking"
    rep.findings.append(Finding(3, 10, "rejected", "record rejected by the fold: garbled"))
    assert views.audit_view(rep, checked=50, fed=50, finished=False)["state"] == "clean"
    rep.findings.append(
        Finding(7, 99, "decision", "trial 2: logged config differs", 2, "config", {"x": 1}, {"x": 2})
    )
    a = views.audit_view(rep, checked=8, fed=50, finished=True)
    assert a["state"] == "finding" and a["rejected"] == 1
    assert a["finding"]["record"] == 7 and a["finding"]["field"] == "config"
    assert a["finding"]["logged"] == "{'x': 1}"


def test_params_view_shows_the_resolved_sizes_and_the_seed():
    b = folded(SCHEMA2).table.builder
    params = dict(views.params_view(b.experiment, b.strategy))
    assert b.strategy is not None and b.experiment is not None
    assert params["population size P"] == str(b.strategy.population_size)
    assert params["sample size S"] == str(b.strategy.sample_size)
    assert params["seed"] == str(b.experiment.seed)
    assert params["cycles"] == "40"


def test_chart_data_is_strict_json_data():
    w = folded(SCHEMA2)
    pts = views.points_json(w.points)
    events = [decode(d) for _, d in FileLog(SCHEMA2).read()]
    ends = [e for e in events if isinstance(e, TrialCompleted | TrialFailed)]
    assert len(pts) <= len(ends)
    assert all(p[2] is None or math.isfinite(p[2]) for p in pts)
    assert {p[3] for p in pts} >= {"", "error", "invalid_metric"}
    data = summary(w.table.builder.freeze())
    pop = views.population_json(data["population"], w.table.rows)
    assert [p[0] for p in pop] == [i["trial"] for i in data["population"]]
    assert all(isinstance(p[1], int) for p in pop)


def test_duration_text():
    assert [views.duration_text(s) for s in (None, 0.4, 59, 61, 3599, 3600 * 2 + 70, 86400 * 3 + 3600 * 4)] == [
        "-", "0s", "59s", "1m 01s", "59m 59s", "2h 01m", "3d 04h",
    ]  # fmt: skip
