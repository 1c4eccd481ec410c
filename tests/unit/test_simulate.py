"""The simulation backend: determinism, the simulated clock, and the controller's capacity rule."""

from __future__ import annotations

import math
from typing import Any

import pytest

from evoq.codec import decode
from evoq.events import (
    ExperimentCreated,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialStarted,
    TrialSubmitted,
)
from evoq.log import MemoryLog
from evoq.reducer import replay
from evoq.simulate import TableObjective, simulate, table_experiment
from evoq.strategy import Strategy

SPACE = {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3, 4], "c": ["x", "y", "z"]}


def _table() -> TableObjective:
    """75 configs, 3 noisy seeds each, train times from 1 to 9 s so runs end out of order."""
    rows = {}
    for a in SPACE["a"]:
        for b in SPACE["b"]:
            for i, c in enumerate(SPACE["c"]):
                base = 10.0 * a + 3.0 * b - 2.0 * i - 0.7 * (a - 2) ** 2
                metrics = (base - 0.5, base, base + 0.5)
                took = 1.0 + (a * 7 + b * 3 + i) % 9
                rows[(a, b, c)] = (metrics, (took, took, took))
    return TableObjective(
        "synthetic/t", SPACE, "score", "maximize", rows, source="tests.unit.test_simulate:TABLE"
    )


TABLE = _table()


def _run(seed: int, workers: int, **strategy: Any) -> tuple[list[bytes], list[Any]]:
    st = Strategy(**{"population_size": 8, "sample_size": 3, "cycles": 120, **strategy})
    log = MemoryLog()
    simulate(table_experiment(TABLE, st, seed=seed), TABLE, workers=workers, log=log)
    records = [r for _, r in log.read()]
    return records, [decode(r) for r in records]


def test_same_seed_same_bytes_other_seed_differs() -> None:
    a, _ = _run(3, 4)
    b, _ = _run(3, 4)
    c, _ = _run(4, 4)
    assert a == b
    assert a != c


def test_result_matches_the_log() -> None:
    st = Strategy(population_size=8, sample_size=3, cycles=60)
    log = MemoryLog()
    res = simulate(table_experiment(TABLE, st, seed=1), TABLE, workers=2, log=log)
    events = [decode(r) for _, r in log.read()]
    assert res.events == len(events)
    again = replay(events)  # decoded lists come back as tuples: compare what the search used
    assert again.population == res.state.population
    assert (again.results, again.next_trial, again.best) == (
        res.state.results,
        res.state.next_trial,
        res.state.best,
    )
    assert res.state.status == "completed"
    assert len(res.completions) == 60
    assert isinstance(events[0], ExperimentCreated) and isinstance(events[-1], ExperimentFinished)
    assert events[-1].at == res.clock


@pytest.mark.parametrize(("workers", "prefetch"), [(1, 0), (3, 0), (5, 2)])
def test_clock_order_and_capacity(workers: int, prefetch: int) -> None:
    _, events = _run(7, workers, prefetch=prefetch)
    ats = [e.at for e in events]
    assert ats == sorted(ats)
    started: dict[int, float] = {}
    submitted: set[int] = set()
    running: set[int] = set()
    evolving = False
    completed = 0
    for e in events:
        if isinstance(e, TrialSubmitted):
            submitted.add(e.trial)
            if e.phase == "evolve":
                evolving = True
            if evolving:  # after init: at most K (+prefetch) runs in flight
                assert len(submitted) <= workers + prefetch
        elif isinstance(e, TrialStarted):
            assert e.trial in submitted
            started[e.trial] = e.at
            running.add(e.trial)
            assert len(running) <= workers
        elif isinstance(e, TrialCompleted):
            assert math.isclose(e.at, started[e.trial] + e.duration)
            assert e.duration == TABLE.expected(dict(_config(events, e.trial)))[1]
            submitted.discard(e.trial)
            running.discard(e.trial)
            completed += 1
        else:
            assert not isinstance(e, TrialFailed)
    assert completed == 120


def _config(events: list[Any], trial: int) -> dict[str, Any]:
    for e in events:
        if isinstance(e, TrialSubmitted) and e.trial == trial:
            return dict(e.config)
    raise AssertionError(trial)


def test_one_run_per_free_worker_and_workers_are_busy() -> None:
    _, events = _run(0, 3)
    first = [e for e in events if isinstance(e, TrialSubmitted) and e.at == 0.0]
    assert len(first) == 3 and all(e.phase == "init" for e in first)  # nothing queued beyond K
    assert sum(1 for e in events if isinstance(e, TrialStarted) and e.at == 0.0) == 3
    in_flight = 0
    for e in events:  # at no time more runs in flight than workers
        in_flight += isinstance(e, TrialSubmitted) - isinstance(e, (TrialCompleted, TrialFailed))
        assert in_flight <= 3


def test_plain_objective_fixed_time_duration_and_failures() -> None:
    def objective(config: dict[str, Any]) -> float:
        if config["c"] == "z" and config["a"] == 0:
            raise RuntimeError("boom")
        return float(config["a"] + config["b"])

    st = Strategy(population_size=6, sample_size=2, cycles=1000)
    exp = table_experiment(TABLE, st, seed=2)
    res = simulate(exp, objective, workers=2, trial_time=5.0, duration=100.0)
    assert res.state.status == "stopped"
    assert res.clock == 100.0
    assert all(c.ended - c.started == 5.0 for c in res.completions)
    assert len(res.completions) <= 2 * 100 / 5
    ended = res.state.failed.get("error", 0) + len(res.completions)
    assert res.state.failed.get("error", 0) > 0
    assert 30 <= ended <= 40  # a worker idles while the last initial results come in


def test_table_objective_noise_and_regret() -> None:
    cfg = {"a": 4, "b": 4, "c": "x"}
    assert TABLE.best_mean == TABLE.mean(cfg)
    assert TABLE.regret(cfg) == 0.0
    assert TABLE.regret({"a": 0, "b": 0, "c": "z"}) > 0


def test_bad_arguments() -> None:
    exp = table_experiment(TABLE, Strategy(population_size=4, sample_size=2, cycles=5))
    with pytest.raises(ValueError):
        simulate(exp, TABLE, workers=0)
    with pytest.raises(TypeError):
        simulate({"not": "an experiment"}, TABLE)


def test_table_has_explicit_noisy_and_noise_free_methods() -> None:
    import random

    cfg = {"a": 2, "b": 3, "c": "y"}
    draws = {TABLE.evaluate(cfg, random.Random(i))[0] for i in range(50)}
    assert len(draws) == 3  # one of the table's seeds per evaluation
    mean, took = TABLE.expected(cfg)
    assert mean == TABLE.mean(cfg) == sum(draws) / 3 and took > 0
    assert not callable(TABLE)  # no silent noise-free objective by wrapping the table in a lambda


def test_table_experiment_writes_a_trial_path_that_simulate_spec_loads_back() -> None:
    from evoq.simulate import simulate_spec, table_of

    exp = table_experiment(TABLE, Strategy(population_size=8, sample_size=3, cycles=30), seed=4)
    assert exp.trial == "tests.unit.test_simulate:TABLE" and table_of(exp.trial) is TABLE
    direct = simulate(exp, TABLE, workers=2)
    again = simulate_spec(exp, 2)  # what `evoq run --simulate 2` does with that trial string
    assert again.state == direct.state
    anonymous = TableObjective("synthetic/anon", SPACE, "score", "maximize", TABLE._rows)
    with pytest.raises(ValueError, match="source"):
        table_experiment(anonymous, Strategy(population_size=4, sample_size=2, cycles=5))


def test_reevaluation_runs_audit_clean_and_report_the_mean(tmp_path: Any) -> None:
    from evoq.audit import audit_file
    from evoq.filelog import FileLog

    st = Strategy(population_size=8, sample_size=3, cycles=150, reeval_count=3, mutation="local")
    path = tmp_path / "r.evoqlog"
    res = simulate(table_experiment(TABLE, st, seed=5), TABLE, workers=3, log=FileLog(path))
    rep = audit_file(str(path))
    assert rep.ok, rep.findings
    events = [decode(r) for _, r in FileLog(path).read()]
    reevals = [e for e in events if isinstance(e, TrialSubmitted) and e.phase == "reeval"]
    assert reevals and res.state.reevaluated == len(reevals) - sum(
        1 for e in reevals if e.trial in res.state.running
    )
    inc = res.state.incumbent
    assert inc is not None and inc.evaluations == 3
    metrics = [e.metric for e in events if isinstance(e, TrialCompleted) and (e.trial == inc.trial or any(
        r.trial == e.trial and r.parent == inc.trial for r in reevals))]  # fmt: skip
    assert len(metrics) == 3 and math.isclose(inc.metric, sum(metrics) / 3)
    assert res.state.results == 150 and len(res.state.population) == 8
