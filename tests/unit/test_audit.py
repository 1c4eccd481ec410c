"""Audits: clean logs pass; flipped bytes, re-chained edits and forged decisions are located."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from evoq.audit import audit_file, prefix_state
from evoq.codec import decode, encode
from evoq.events import ExperimentCreated, TrialCompleted, TrialSubmitted
from evoq.filelog import FileLog
from evoq.lineage import lineage, render
from evoq.reducer import replay
from evoq.space import SearchSpace
from evoq.strategy import Strategy

from ..sim import simulate

GOLDEN = Path(__file__).parent.parent / "golden"


@pytest.fixture
def clean_log(tmp_path) -> Path:
    events = simulate(
        random.Random(5), Strategy(population_size=6, sample_size=3, cycles=30, max_attempts=2), steps=300
    )
    path = tmp_path / "clean.evoqlog"
    FileLog(path).append([encode(e) for e in events])
    return path


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.evoqlog")), ids=lambda p: p.name)
def test_golden_logs_audit_clean(path):
    rep = audit_file(str(path))
    assert rep.ok, rep.findings
    assert rep.decisions_checked > 30 and rep.status == "completed"


def test_clean_log_passes_with_its_head(clean_log):
    rep = audit_file(str(clean_log))
    assert rep.ok and rep.chain == "verified" and rep.head
    assert audit_file(str(clean_log), expect_head=rep.head).ok
    wrong = audit_file(str(clean_log), expect_head="00" * 16)
    assert not wrong.ok and wrong.findings[0].kind == "head"


def frame_starts(path: Path) -> list[int]:
    return [pos for pos, _ in FileLog(path).read()]


def test_flipping_any_byte_is_caught_and_located(clean_log, tmp_path):
    data = clean_log.read_bytes()
    starts = frame_starts(clean_log)
    rng = random.Random(0)
    offsets = sorted(
        set(range(0, 40)) | set(rng.sample(range(len(data)), 300)) | set(range(len(data) - 30, len(data)))
    )
    for off in offsets:
        bad = bytearray(data)
        bad[off] ^= 1 << rng.randrange(8)
        path = tmp_path / "bad.evoqlog"
        path.write_bytes(bytes(bad))
        rep = audit_file(str(path))
        assert not rep.ok, off
        where = rep.findings[0].position
        frame = max((s for s in starts if s <= off), default=0)
        assert where == (0 if off < 8 else frame), (off, rep.findings[0])


def rechain(src: Path, dst: Path, edit) -> int:
    """Rewrite ``src`` into ``dst`` with one record edited and the chain recomputed."""
    records = [data for _, data in FileLog(src).read()]
    index = edit(records)
    FileLog(dst).append(records)
    return index


def test_rechained_config_change_is_located_exactly(clean_log, tmp_path):
    def edit(records):
        for i, data in enumerate(records):
            e = decode(data)
            if isinstance(e, TrialSubmitted) and e.phase == "evolve" and e.attempt == 0:
                config = dict(e.config)
                config["width"] = 64 if config["width"] != 64 else 32
                records[i] = encode(TrialSubmitted(e.trial, 0, config, e.parent, e.phase, e.note, e.at))
                return i
        raise AssertionError("no evolve submission")

    path = tmp_path / "forged.evoqlog"
    index = rechain(clean_log, path, edit)
    rep = audit_file(str(path))
    assert rep.chain == "verified"  # the chain itself is consistent: only the content betrays it
    (f,) = rep.findings
    assert (f.kind, f.record, f.field) == ("decision", index, "config")
    assert f.logged["width"] != f.expected["width"]


def test_rechained_forged_parent_gives_the_exact_divergence(clean_log, tmp_path):
    def edit(records):
        for i, data in enumerate(records):
            e = decode(data)
            if isinstance(e, TrialSubmitted) and e.parent is not None:
                records[i] = encode(TrialSubmitted(e.trial, 0, e.config, e.parent + 1, e.phase, e.note, e.at))
                return i
        raise AssertionError

    path = tmp_path / "forged.evoqlog"
    index = rechain(clean_log, path, edit)
    (f,) = audit_file(str(path)).findings
    assert (f.record, f.field, f.logged, f.expected) == (index, "parent", f.expected + 1, f.expected)


def test_rechained_metric_change_is_caught_where_it_changes_a_decision(clean_log, tmp_path):
    events = [decode(d) for _, d in FileLog(clean_log).read()]
    parents = {e.parent for e in events if isinstance(e, TrialSubmitted) and e.parent is not None}

    def edit(records):
        for i, data in enumerate(records):
            e = decode(data)
            if isinstance(e, TrialCompleted) and e.trial in parents:
                records[i] = encode(TrialCompleted(e.trial, e.attempt, -1e9, e.duration, e.worker, e.at))
                return i
        raise AssertionError

    path = tmp_path / "forged.evoqlog"
    index = rechain(clean_log, path, edit)
    (f,) = audit_file(str(path)).findings
    assert f.kind == "decision" and f.record > index and f.field in ("parent", "config")


def test_terminal_event_for_unknown_trial_and_false_finish(clean_log, tmp_path):
    def edit(records):
        for i, data in enumerate(records):
            e = decode(data)
            if isinstance(e, TrialCompleted):
                records.insert(i, encode(TrialCompleted(9999, 0, 1.0, 1.0, "w", e.at)))
                return i
        raise AssertionError

    path = tmp_path / "forged.evoqlog"
    index = rechain(clean_log, path, edit)
    (f,) = audit_file(str(path)).findings
    assert (f.kind, f.record, f.trial) == ("terminal", index, 9999)


def test_point_in_time_replay_and_lineage(clean_log):
    events = [decode(d) for _, d in FileLog(clean_log).read()]
    for n in (1, 10, 50, len(events)):
        assert prefix_state(str(clean_log), until=n).freeze() == replay(events[:n])
    t = events[40].at
    k = next(i for i, e in enumerate(events) if e.at > t)
    assert prefix_state(str(clean_log), at=t).freeze() == replay(events[:k])
    data = lineage(events)
    final = replay(events)
    assert data["best"] == final.best.trial and data["incumbent"] == final.incumbent.trial
    assert data["ancestry"][0] == final.incumbent.trial
    by_trial = {t["trial"]: t for t in data["trials"]}
    for a, b in zip(data["ancestry"], data["ancestry"][1:], strict=False):
        assert by_trial[a]["parent"] == b
    child = next(t for t in data["trials"] if t["parent"] is not None)
    assert child["mutated"] and all(v[0] != v[1] for v in child["mutated"].values())
    assert render(data, "csv").count("\n") == len(data["trials"]) + 1
    assert render(data, "dot").startswith("digraph")


def test_reports_say_which_best_they_show(tmp_path):
    """With re-evaluation, the summary, top, lineage and plot name the incumbent (best mean, with
    its count) and the best single result apart."""
    from evoq.plot import plot
    from evoq.report import best_lines, summary, top_json, top_lines, trial_rows
    from evoq.simulate import simulate, table_experiment

    from .test_simulate import TABLE

    st_ = Strategy(population_size=8, sample_size=3, cycles=120, reeval_count=3)
    res = simulate(
        table_experiment(TABLE, st_, seed=2), TABLE, workers=2, log=FileLog(tmp_path / "r.evoqlog")
    )
    events = [decode(d) for _, d in FileLog(tmp_path / "r.evoqlog").read()]
    data = summary(res.state)
    inc = data["incumbent"]
    assert inc["evaluations"] == 3 and data["reevaluated"] > 0
    assert data["best"]["metric"] >= inc["metric"] - 1e-9  # maximize: the luckiest draw >= a mean
    lines = best_lines(data)
    assert "best mean of 3 evaluations" in lines[0] and f"trial {inc['trial']}" in lines[0]
    top = top_json(trial_rows(events), 5, maximize=True)
    assert [r["mean"] for r in top] == sorted((r["mean"] for r in top), reverse=True)
    # top ranks configs: the incumbent's config with its race's evaluations, and any duplicate's
    assert any(inc["trial"] in r["trials"] and r["evaluations"] >= 3 for r in top), (inc, top)
    row = next(r for r in top if inc["trial"] in r["trials"])
    assert f"mean {row['mean']:.6g} of {row['evaluations']}" in "\n".join(top_lines(top))
    data_l = lineage(events)
    assert data_l["incumbent"] == inc["trial"] and data_l["ancestry"][0] == inc["trial"]
    assert data_l["best"] == data["best"]["trial"]
    assert "incumbent (best mean)" in render(data_l, "dot")
    again = [t for t in data_l["trials"] if t["phase"] == "reeval"]
    assert again and all(t["mutated"] == {} for t in again)
    out = plot(events, tmp_path / "p.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


REEVAL_GOLDEN = GOLDEN / "reeval" / "reeval-serial-316f291"


def test_a_log_of_the_serial_reevaluation_schedule_replays_and_audits_as_it_was_written(tmp_path):
    """Written by the evoq that introduced re-evaluation (one re-run per race at a time), before
    ``reeval_schedule`` existed: the key's legacy value re-derives its decisions."""
    import dataclasses
    import json

    from evoq.log import replay_log
    from evoq.report import summary

    log = FileLog(f"{REEVAL_GOLDEN}.evoqlog")
    records = [decode(r) for _, r in log.read()]
    assert "reeval_schedule" not in records[0].strategy
    expected = json.loads(REEVAL_GOLDEN.with_suffix(".state.json").read_text())
    got = json.loads(json.dumps(summary(replay_log(log).freeze()), sort_keys=True))
    assert {k: got[k] for k in expected} == expected and got["reevaluated"] > 0
    rep = audit_file(f"{REEVAL_GOLDEN}.evoqlog")
    assert rep.ok, rep.findings
    # the check has teeth: read as the parallel schedule, the same decisions are not re-derived
    created = dataclasses.replace(records[0], strategy={**records[0].strategy, "reeval_schedule": "parallel"})
    forced = tmp_path / "forced.evoqlog"
    FileLog(forced).append([encode(created)] + [encode(e) for e in records[1:]])
    assert any(f.kind == "decision" for f in audit_file(str(forced)).findings)


def test_top_ranks_configs_with_every_evaluation_of_each():
    """A config proposed again (the space ran out of unseen ones) is one config: `top` showed it
    once per trial, each "of 1" (found by a newcomer walkthrough)."""
    created = ExperimentCreated(
        "dups", SearchSpace.parse({"m": [1, 2]}).spec(), Strategy(population_size=2, sample_size=1, cycles=10).to_dict(),
        0, "m:f", "test", 0.0,
    )  # fmt: skip
    from evoq.report import top_json, top_lines, trial_rows

    events: list[Any] = [created]
    for trial, (m, metric) in enumerate([(2, 2.0), (1, 1.0), (2, 4.0), (2, 3.0), (1, 0.5)]):
        events += [
            TrialSubmitted(trial, 0, {"m": m}, None, "init", "", 1.0),
            TrialCompleted(trial, 0, metric, 0.1, "w", 2.0),
        ]
    top = top_json(trial_rows(events), 5, maximize=True)
    assert [(r["trial"], r["evaluations"], r["mean"], r["trials"]) for r in top] == [
        (0, 3, 3.0, [0, 2, 3]),
        (1, 2, 0.75, [1, 4]),
    ]
    assert "mean 3 of 3 (first 2) (also trials 2, 3)" in top_lines(top)[0]
