import copy
import dataclasses
import random
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evoq.events import ExperimentFinished, TrialCompleted, TrialFailed, TrialStarted, TrialSubmitted
from evoq.reducer import InvalidLogError, State, StateBuilder, apply, replay
from evoq.strategy import Strategy

from ..sim import created, simulate

strategies = st.builds(
    lambda p, s, mode, fail, attempts, r: Strategy(
        population_size=p,
        sample_size=min(s, p - 1),
        cycles=30,
        optimize_mode=mode,
        on_failure=fail,
        max_attempts=attempts,
        max_failures=15,
        reeval_count=r,
    ),
    st.integers(2, 8),
    st.integers(1, 4),
    st.sampled_from(["maximize", "minimize"]),
    st.sampled_from(["ignore", "worst"]),
    st.integers(1, 3),
    st.integers(1, 3),
)
runs = st.tuples(st.integers(0, 2**32), strategies).map(
    lambda t: simulate(random.Random(t[0]), t[1], steps=250, fail_rate=0.3)
)


def plain(s: State) -> dict:
    """A deep copy of the state's content (mapping proxies made plain dicts)."""
    out = {}
    for f in dataclasses.fields(s):
        v = getattr(s, f.name)
        out[f.name] = copy.deepcopy(dict(v) if isinstance(v, MappingProxyType) else v)
    return out


def no_count(s: State) -> State:
    return dataclasses.replace(s, events=0)


@given(runs, st.data())
@settings(max_examples=60, deadline=None)
def test_replay_of_prefix_then_rest_equals_replay_of_all(events, data):
    k = data.draw(st.integers(1, len(events)))
    assert replay(events[k:], replay(events[:k])) == replay(events)


@given(runs)
@settings(max_examples=40, deadline=None)
def test_replay_is_the_fold_of_apply_and_apply_is_pure(events):
    s = State()
    for e in events:
        before = plain(s)
        s2 = apply(s, e)
        assert plain(s) == before  # the input state (and every config in it) is unchanged
        s = s2
    assert s == replay(events)


@given(runs, st.data())
@settings(max_examples=60, deadline=None)
def test_duplicated_and_reordered_duplicates_change_nothing(events, data):
    # re-deliver some already-logged events (terminal or not) at later positions
    extra = data.draw(st.lists(st.tuples(st.integers(1, len(events) - 1), st.integers(0, 10**6)), max_size=8))
    after: dict[int, list] = {}  # original index -> duplicates delivered right after it
    for src, where in extra:
        after.setdefault(src + where % (len(events) - src), []).append(events[src])
    noisy = []
    for j, e in enumerate(events):
        noisy.append(e)
        noisy.extend(after.get(j, []))
    assert no_count(replay(noisy)) == no_count(replay(events))


@given(runs)
@settings(max_examples=40, deadline=None)
def test_population_never_exceeds_p_and_counts_add_up(events):
    b = StateBuilder()
    for e in events:
        b.add(e)
        assert b.strategy is not None
        assert len(b.population) <= b.strategy.population_size
        assert len(b.running) + len(b.retry) <= b.next_trial
    s = b.freeze()
    worst = sum(1 for i in s.population if i.metric in (float("inf"), float("-inf")))
    assert s.results >= s.completed + worst
    if s.best is not None:
        better = max if s.strategy.maximize else min
        finite = [i.metric for i in s.population if i.metric == i.metric and abs(i.metric) != float("inf")]
        if finite:
            assert better([s.best.metric, *finite]) == s.best.metric


def base(**kw):
    st_ = Strategy(population_size=3, sample_size=2, cycles=10, **kw)
    return StateBuilder(replay([created(st_, {"a": [1, 2, 3, 4, 5, 6, 7, 8]})]))


def submit(b, i, a=0, v=1):
    b.add(TrialSubmitted(i, a, {"a": v}, None, "init", "", 0.0))


def test_aging_pushes_out_the_oldest_and_best_is_remembered():
    b = base()
    for i, m in enumerate([9.0, 1.0, 2.0, 3.0]):
        submit(b, i, v=i + 1)
        b.add(TrialCompleted(i, 0, m, 1.0, "w", 0.0))
    assert [x.trial for x in b.population] == [1, 2, 3]
    assert b.best is not None and b.best.trial == 0 and b.best.metric == 9.0


def test_first_terminal_event_wins():
    b = base()
    submit(b, 0)
    b.add(TrialFailed(0, 0, "lost", "worker died", "w", 0.0))
    b.add(TrialCompleted(0, 0, 5.0, 1.0, "w", 0.0))  # too late: attempt 0 already ended
    assert b.completed == 0 and 0 in b.retry
    b.add(TrialSubmitted(0, 1, {"a": 1}, None, "init", "", 0.0))
    b.add(TrialCompleted(0, 1, 4.0, 1.0, "w", 0.0))
    b.add(TrialFailed(0, 1, "error", "late", "w", 0.0))
    assert b.completed == 1 and b.population[-1].metric == 4.0 and not b.failed.get("error")


def test_on_failure_worst_enters_population_and_counts_toward_cycles():
    b = base(on_failure="worst")
    submit(b, 0)
    b.add(TrialFailed(0, 0, "error", "boom", "w", 0.0))
    assert b.results == 1 and b.population[-1].metric == float("-inf") and b.best is None
    b2 = base(on_failure="ignore")
    submit(b2, 0)
    b2.add(TrialFailed(0, 0, "error", "boom", "w", 0.0))
    assert b2.results == 0 and not b2.population and not b2.seen


def test_lost_runs_are_retried_then_counted():
    b = base(max_attempts=2)
    submit(b, 0)
    b.add(TrialFailed(0, 0, "lost", "", "w", 0.0))
    assert 0 in b.retry and b.failures_in_a_row == 0
    b.add(TrialSubmitted(0, 1, {"a": 1}, None, "init", "", 0.0))
    b.add(TrialFailed(0, 1, "preempted", "", "w", 0.0))
    assert not b.retry and b.failures_in_a_row == 1 and b.failed == {"lost": 1, "preempted": 1}


def test_non_finite_completion_counts_as_invalid_metric():
    b = base()
    submit(b, 0)
    b.add(TrialCompleted(0, 0, float("nan"), 1.0, "w", 0.0))
    assert b.failed == {"invalid_metric": 1} and not b.population


def test_max_failures_ends_the_experiment():
    b = base(max_failures=3)
    for i in range(3):
        submit(b, i, v=i + 1)
        b.add(TrialFailed(i, 0, "error", "boom", "w", 0.0))
    assert b.status == "failed"
    b.add(ExperimentFinished("failed", "3 in a row", 0.0))
    submit(b, 3)
    assert 3 not in b.running  # nothing after the end counts


def test_started_records_worker_once():
    b = base()
    submit(b, 0)
    b.add(TrialStarted(0, 0, "w1", 5.0))
    b.add(TrialStarted(0, 0, "w2", 6.0))
    assert b.running[0].worker == "w1" and b.running[0].started_at == 5.0


def test_log_must_start_with_experiment_created():
    with pytest.raises(InvalidLogError, match="experiment_created"):
        replay([TrialStarted(0, 0, "w", 0.0)])
    bad = created(Strategy())
    bad = dataclasses.replace(bad, space={"p": []})
    with pytest.raises(InvalidLogError, match="'p'"):
        replay([bad])


def test_simulation_is_deterministic():
    a = simulate(random.Random(3), Strategy(population_size=5, sample_size=2, cycles=20))
    b = simulate(random.Random(3), Strategy(population_size=5, sample_size=2, cycles=20))
    assert a == b


def test_add_judged_says_which_events_took_effect():
    b = base(max_attempts=2)
    assert b.add_judged(TrialSubmitted(0, 0, {"a": 1}, None, "init", "", 0.0))
    assert not b.add_judged(TrialSubmitted(0, 0, {"a": 1}, None, "init", "", 0.0))  # duplicate
    assert not b.add_judged(TrialStarted(0, 0, "w", 0.0))  # not a submission or terminal event
    assert b.add_judged(TrialFailed(0, 0, "lost", "", "w", 0.0))  # counted: goes to retry
    assert not b.add_judged(TrialCompleted(0, 0, 1.0, 1.0, "w", 0.0))  # too late for attempt 0
    assert b.add_judged(TrialSubmitted(0, 1, {"a": 1}, None, "init", "", 0.0))
    assert b.add_judged(TrialCompleted(0, 1, 1.0, 1.0, "w", 0.0))


@given(runs)
@settings(max_examples=60, deadline=None)
def test_reevaluations_never_enter_the_population_and_races_stay_consistent(events):
    b = StateBuilder()
    phase: dict[int, str] = {}
    for e in events:
        b.add(e)
        if isinstance(e, TrialSubmitted) and e.trial in b.running:
            phase[e.trial] = e.phase
        st_ = b.strategy
        assert all(phase.get(i.trial) != "reeval" for i in b.population)
        assert len(b.population) <= st_.population_size
        inc = b.incumbent
        if inc is not None:
            assert phase[inc.trial] != "reeval" and 1 <= inc.evaluations <= st_.reeval_count
            if inc.trial in b.race:  # the incumbent being confirmed
                assert b.race[inc.trial].n == inc.evaluations
        for race in b.race.values():
            assert race.pending >= 0 and race.tries + 1 <= st_.reeval_count
        if st_.reeval_count == 1:
            assert not b.race and b.reevaluated == 0
            # no re-evaluation: the incumbent is the best single result of an individual
            if b.best is not None:
                assert inc is not None and (inc.trial, inc.metric) == (b.best.trial, b.best.metric)


def test_reeval_updates_the_mean_in_place_and_failures_follow_on_failure():
    from evoq.proposal import due_reeval, propose

    for on_failure in ("ignore", "worst"):
        st_ = Strategy(population_size=3, sample_size=2, cycles=20, reeval_count=3, on_failure=on_failure)
        b = StateBuilder(replay([created(st_, {"a": [1, 2, 3, 4, 5, 6, 7, 8]})]))
        for i, m in enumerate([1.0, 2.0]):
            submit(b, i, v=i + 1)
            b.add(TrialCompleted(i, 0, m, 1.0, "w", 0.0))
        # the first result is the incumbent at once (to be confirmed); trial 1 beats it: a challenger
        assert (b.incumbent.trial, b.incumbent.evaluations) == (0, 1) and set(b.race) == {0, 1}
        b.add(TrialSubmitted(2, 0, {"a": 1}, 0, "reeval", "", 0.0))
        assert b.race[0].pending == 1 and b.race[0].tries == 1
        b.add(TrialCompleted(2, 0, 3.0, 1.0, "w", 0.0))
        assert [(i.trial, i.metric) for i in b.population] == [(0, 2.0), (1, 2.0)]  # order kept
        assert b.results == 3 and b.reevaluated == 1 and b.completed == 3
        assert (b.incumbent.trial, b.incumbent.metric, b.incumbent.evaluations) == (0, 2.0, 2)
        b.add(TrialSubmitted(3, 0, {"a": 1}, 0, "reeval", "", 0.0))
        b.add(TrialFailed(3, 0, "error", "boom", "w", 0.0))
        assert 0 not in b.race and b.failures_in_a_row == 1
        if on_failure == "worst":  # the worst metric joins the mean: the challenger's race is due
            assert b.results == 4 and b.population[0].metric == float("-inf")
            assert b.incumbent.metric == float("-inf") and b.incumbent.evaluations == 3
            race = due_reeval(b)
            assert race is not None and race.trial == 1
            p = propose(b)  # the initial population's last trial comes first
            assert p is not None and p.phase == "init"
            submit(b, p.trial, v=3)
            p = propose(b)
            assert p is not None and (p.phase, p.parent) == ("reeval", 1)
        else:  # nothing joins: the incumbent's race ended with 2 evaluations; trial 1 does not beat 2.0
            assert b.results == 3
            assert (b.incumbent.trial, b.incumbent.metric, b.incumbent.evaluations) == (0, 2.0, 2)
            p = propose(b)
            assert p is not None and p.phase == "init"  # trial 1's race is not due: 2.0 does not beat 2.0
