import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evoq.events import TrialCompleted, TrialFailed, TrialSubmitted
from evoq.proposal import mutate, propose, trial_rng
from evoq.reducer import StateBuilder, replay
from evoq.space import SearchSpace
from evoq.strategy import Strategy

from ..nni_reference import NNIRegularizedEvolution
from ..sim import created, objective, simulate

NB201 = {f"edge{i}": ["none", "skip", "conv1x1", "conv3x3", "pool"] for i in range(6)}


@given(st.integers(0, 2**32), st.sampled_from(["maximize", "minimize"]), st.sampled_from(["ignore", "worst"]))
@settings(max_examples=40, deadline=None)
def test_nni_mode_matches_the_reference_implementation(seed, mode, on_failure):
    """Same results in the same order => NNI's logic and evoq's NNI mode submit the same configs."""
    strategy = Strategy.nni(
        population_size=6,
        sample_size=3,
        cycles=40,
        optimize_mode=mode,
        on_failure=on_failure,
        max_failures=10**6,
    )
    ref = NNIRegularizedEvolution(NB201, mode, 6, 3, 40, 0.05, on_failure)
    rng = random.Random(seed)
    b = StateBuilder()
    b.add(created(strategy, NB201, seed=seed))
    checked = 0
    for _ in range(400):
        if len(b.running) < 4 and rng.random() < 0.5:
            p = propose(b)
            expected = ref.next_config(b.next_trial, trial_rng(seed, b.next_trial))
            if p is None:
                assert expected is None
            else:
                assert expected == p.config
                checked += 1
                b.add(TrialSubmitted(p.trial, p.attempt, p.config, p.parent, p.phase, p.note, 0.0))
            continue
        if not b.running:
            continue
        trial = rng.choice(sorted(b.running))
        if rng.random() < 0.2:
            b.add(TrialFailed(trial, 0, "error", "x", "w", 0.0))
            ref.on_result(trial, None)
        else:
            m = objective(dict(b.running[trial].config)) + rng.random()
            b.add(TrialCompleted(trial, 0, m, 1.0, "w", 0.0))
            ref.on_result(trial, m)
        assert [i.metric for i in b.population] == [i.y for i in ref._population]
    assert checked > 6


def child_equals_parent_rate(strategy: Strategy, n: int = 3000) -> float:
    space = SearchSpace.parse(NB201)
    rng = random.Random(0)
    same = 0
    for i in range(n):
        parent = space.sample(rng)
        same += mutate(dict(parent), space, strategy, trial_rng(1, i)) == parent
    return same / n


def test_default_child_never_equals_parent_but_nni_mode_mostly_does():
    assert child_equals_parent_rate(Strategy()) == 0.0
    nni = child_equals_parent_rate(Strategy.nni())
    assert 0.70 < nni < 0.85  # (1 - 0.05 * 4/5) ** 6 = 0.783


def test_default_child_differs_in_exactly_one_dimension_when_nothing_mutated():
    space = SearchSpace.parse(NB201)
    strategy = Strategy(mutation_prob=0.0)
    parent = space.sample(random.Random(5))
    for i in range(200):
        child = mutate(dict(parent), space, strategy, trial_rng(2, i))
        assert sum(child[k] != parent[k] for k in parent) == 1


def test_same_seed_and_events_give_same_proposals():
    strategy = Strategy(population_size=5, sample_size=2, cycles=30)
    events = simulate(random.Random(4), strategy, steps=120)
    for k in range(1, len(events), 7):
        a, b = replay(events[:k]), StateBuilder(replay(events[:k]))
        assert propose(a) == propose(b)


def test_different_seed_gives_different_first_configs():
    s = Strategy(population_size=5, sample_size=2)
    a = propose(replay([created(s, NB201, seed=1)]))
    b = propose(replay([created(s, NB201, seed=2)]))
    assert a is not None and b is not None and a.config != b.config


def test_dedup_avoids_seen_configs_and_notes_exhaustion():
    tiny = {"a": [1, 2], "b": [1, 2]}  # 4 configs
    s = Strategy(population_size=3, sample_size=2, cycles=10)
    b = StateBuilder(replay([created(s, tiny)]))
    configs = []
    for _ in range(3):
        p = propose(b)
        assert p is not None and p.note == ""
        configs.append(tuple(p.config.values()))
        b.add(TrialSubmitted(p.trial, 0, p.config, None, p.phase, "", 0.0))
    assert len(set(configs)) == 3
    for t in range(3):
        b.add(TrialCompleted(t, 0, float(t), 1.0, "w", 0.0))
    p = propose(b)
    assert p is not None and p.phase == "evolve" and p.parent is not None and p.note == ""
    b.add(TrialSubmitted(p.trial, 0, p.config, p.parent, p.phase, "", 0.0))
    p = propose(b)  # all four configs seen now
    assert p is not None and "exhausted" in p.note


def test_termination_and_capacity_follow_state():
    s = Strategy(population_size=3, sample_size=2, cycles=4)
    b = StateBuilder(replay([created(s, NB201)]))
    for _ in range(3):
        p = propose(b)
        assert p is not None and p.phase == "init"
        b.add(TrialSubmitted(p.trial, 0, p.config, None, "init", "", 0.0))
    assert propose(b) is None  # the initial population is still running
    b.add(TrialCompleted(0, 0, 1.0, 1.0, "w", 0.0))
    assert propose(b) is None
    b.add(TrialCompleted(1, 0, 2.0, 1.0, "w", 0.0))
    b.add(TrialCompleted(2, 0, 3.0, 1.0, "w", 0.0))
    p = propose(b)
    assert p is not None and p.phase == "evolve"
    b.add(TrialSubmitted(p.trial, 0, p.config, p.parent, p.phase, "", 0.0))
    assert propose(b) is None  # results + running == cycles
    b.add(TrialCompleted(3, 0, 0.5, 1.0, "w", 0.0))
    assert b.status == "completed" and propose(b) is None


def test_lost_trial_is_resubmitted_first_with_the_same_config():
    s = Strategy(population_size=3, sample_size=2, cycles=4)
    b = StateBuilder(replay([created(s, NB201)]))
    p = propose(b)
    assert p is not None
    b.add(TrialSubmitted(p.trial, 0, p.config, None, "init", "", 0.0))
    b.add(TrialFailed(0, 0, "lost", "worker died", "w", 0.0))
    again = propose(b)
    assert again is not None and (again.trial, again.attempt, again.config) == (0, 1, p.config)


@pytest.mark.parametrize("mode", ["maximize", "minimize"])
def test_tournament_ties_go_to_the_youngest(mode):
    s = Strategy(population_size=3, sample_size=2, cycles=100, optimize_mode=mode, mutation_prob=0.0)
    b = StateBuilder(replay([created(s, NB201)]))
    for t in range(3):
        p = propose(b)
        b.add(TrialSubmitted(p.trial, 0, p.config, None, "init", "", 0.0))
        b.add(TrialCompleted(t, 0, 1.0, 1.0, "w", 0.0))
    parents = set()
    for _ in range(20):
        b2 = StateBuilder(b.freeze())
        b2.next_trial = b.next_trial + _ * 1000  # different rng draws, same population
        p = propose(b2)
        assert p is not None
        parents.add(p.parent)
    # whichever pair is drawn, the younger member wins: trial 0 can never be a parent
    assert 0 not in parents


@given(st.integers(0, 2**32))
@settings(max_examples=40, deadline=None)
def test_started_and_progress_events_never_change_a_proposal(seed):
    """What the controller's commit relies on to let a worker's trial_started / trial_progressed
    pass: folding one, anywhere in a log, leaves propose() and the capacity rule unchanged."""
    from evoq.events import TrialProgressed, TrialStarted
    from evoq.proposal import may_submit

    rng = random.Random(seed)
    events = simulate(rng, Strategy(population_size=6, sample_size=3, cycles=30), steps=300)
    b = StateBuilder()
    for e in events:
        b.add(e)
        if b.running and rng.random() < 0.5:
            before = (propose(b), may_submit(b, 3))
            trial = rng.choice(sorted(b.running))
            extra = rng.choice([
                TrialStarted(trial, b.running[trial].attempt, "w9", 1.0),
                TrialProgressed(trial, b.running[trial].attempt, rng.randrange(50), rng.random(), 1.0),
                TrialStarted(10**6, 0, "ghost", 1.0),
            ])  # fmt: skip
            b.add(extra)
            assert (propose(b), may_submit(b, 3)) == before


def test_nested_mutation_samples_a_new_branchs_subspace_and_child_differs_on_the_flat_config():
    from evoq.space import NestedChoice

    space = SearchSpace.parse(
        {
            "layer": [
                {"_name": "Empty"},
                {"_name": "Conv", "kernel_size": [1, 2, 3, 5]},
                {"_name": "Pool", "pooling_size": [2, 3, 5]},
            ],
            "width": [16, 32],
        }
    )
    parent = {"layer": {"_name": "Conv", "kernel_size": 3}, "width": 16}
    nested = space.params[0]
    assert isinstance(nested, NestedChoice)
    changed_branch = changed_sub = 0
    for i in range(3000):
        child = mutate(dict(parent), space, Strategy(mutation_prob=0.3), trial_rng(5, i))
        assert space.contains(child) and child != parent
        if child["layer"]["_name"] != "Conv":
            changed_branch += 1
        elif child["layer"] != parent["layer"]:
            changed_sub += 1
    assert changed_branch > 300 and changed_sub > 300
    # with nothing mutated, exactly one flattened dimension changes: branch, kernel_size or width
    kinds = set()
    for i in range(300):
        child = mutate(dict(parent), space, Strategy(mutation_prob=0.0), trial_rng(6, i))
        diff = [k for k in ("width",) if child[k] != parent[k]]
        if child["layer"]["_name"] != "Conv":
            diff.append("branch")
        elif child["layer"]["kernel_size"] != 3:
            diff.append("kernel_size")
        assert len(diff) == 1
        kinds.add(diff[0])
    assert kinds == {"width", "branch", "kernel_size"}


def test_local_mutation_moves_ordered_parameters_to_neighbours():
    space = SearchSpace.parse({"units": [16, 32, 64, 128, 256, 512], "act": ["relu", "tanh", "gelu"]})
    parent = {"units": 64, "act": "relu"}
    local, resample = (
        Strategy(mutation="local", mutation_prob=0.5),
        Strategy(mutation="resample", mutation_prob=0.5),
    )
    near = far = 0
    for i in range(2000):
        a = mutate(dict(parent), space, local, trial_rng(1, i))
        b = mutate(dict(parent), space, resample, trial_rng(1, i))
        near += a["units"] in (32, 128)
        far += b["units"] in (32, 128)
    assert near > 2 * far


def test_nni_mode_mutation_is_unchanged_by_the_new_keys():
    """Strategy.nni() consumes the generator exactly as NNI 2.10 does (the reference test checks
    the decisions); here: the same child as the plain per-dimension resampling rule."""
    space = SearchSpace.parse(NB201)
    st_ = Strategy.nni(mutation_prob=0.3)
    for i in range(200):
        parent = space.sample(random.Random(i))
        rng, ref = trial_rng(9, i), trial_rng(9, i)
        expected = {k: (space.params[j].sample(ref) if ref.uniform(0, 1) < 0.3 else v)
                    for j, (k, v) in enumerate(parent.items())}  # fmt: skip
        assert mutate(dict(parent), space, st_, rng) == expected


def test_reeval_is_proposed_for_a_leader_and_counts_toward_cycles():
    s = Strategy(population_size=3, sample_size=2, cycles=20, reeval_count=3, reeval_schedule="serial")
    b = StateBuilder(replay([created(s, NB201)]))
    configs = []
    for _ in range(3):
        p = propose(b)
        configs.append(p.config)
        b.add(TrialSubmitted(p.trial, 0, p.config, p.parent, p.phase, "", 0.0))
    b.add(TrialCompleted(0, 0, 5.0, 1.0, "w", 0.0))
    p = propose(b)  # trial 0 beats no incumbent: its race is due
    assert p is not None and (p.trial, p.phase, p.parent, p.config) == (3, "reeval", 0, configs[0])
    b.add(TrialSubmitted(p.trial, 0, p.config, p.parent, p.phase, "", 0.0))
    assert propose(b) is None  # one re-evaluation at a time per race; the population is not full
    b.add(TrialCompleted(p.trial, 0, 3.0, 1.0, "w", 0.0))
    assert b.results == 2 and len(b.population) == 1 and b.population[0].metric == 4.0
    p2 = propose(b)
    assert p2 is not None and p2.phase == "reeval" and p2.parent == 0
    b.add(TrialSubmitted(p2.trial, 0, p2.config, p2.parent, p2.phase, "", 0.0))
    b.add(TrialCompleted(p2.trial, 0, 4.0, 1.0, "w", 0.0))
    assert b.incumbent is not None and (b.incumbent.trial, b.incumbent.metric, b.incumbent.evaluations) == (
        0,
        4.0,
        3,
    )
    assert b.best is not None and b.best.metric == 5.0  # the best single draw stays available
    b.add(TrialCompleted(1, 0, 3.5, 1.0, "w", 0.0))  # does not beat the incumbent's mean: no race
    assert 1 not in b.race
    b.add(TrialCompleted(2, 0, 9.0, 1.0, "w", 0.0))
    p3 = propose(b)
    assert p3 is not None and (p3.phase, p3.parent) == ("reeval", 2)


def test_nothing_is_queued_beyond_capacity_in_any_phase():
    from evoq.proposal import may_submit

    s = Strategy(population_size=6, sample_size=2, cycles=100, reeval_count=4)
    b = StateBuilder(replay([created(s, NB201)]))
    while may_submit(b, 2):
        p = propose(b)
        assert p is not None
        b.add(TrialSubmitted(p.trial, 0, p.config, p.parent, p.phase, "", 0.0))
    assert [r.phase for r in b.running.values()] == ["init", "init"]  # not the whole population
    b.add(TrialCompleted(0, 0, 5.0, 1.0, "w", 0.0))
    assert may_submit(b, 2) and not may_submit(b, 1) and may_submit(b, 3)
    assert not may_submit(StateBuilder(), 5)  # no experiment yet


def test_neighbour_moves_discrete_ordered_parameters_and_resamples_continuous_ones():
    from evoq.space import moves_locally

    space = SearchSpace.parse(
        {"units": [16, 32, 64, 128, 256, 512], "depth": {"_type": "randint", "_value": [0, 20]},
         "lr": {"_type": "uniform", "_value": [0, 1]}, "act": ["relu", "tanh"]}
    )  # fmt: skip
    assert [moves_locally(p, "neighbour") for p in space.params] == [True, True, False, False]
    assert [moves_locally(p, "local") for p in space.params] == [True, True, True, False]
    assert not any(moves_locally(p, "resample") for p in space.params)
    parent = {"units": 64, "depth": 10, "lr": 0.5, "act": "relu"}
    st_ = Strategy(mutation="neighbour", mutation_prob=1.0)
    far_lr = near_depth = 0
    for i in range(1000):
        child = mutate(dict(parent), space, st_, trial_rng(3, i))
        near_depth += abs(child["depth"] - 10) <= 2
        far_lr += abs(child["lr"] - 0.5) > 0.3
    # depth moves locally (resampling would land within 2 of 10 a quarter of the time); lr is
    # resampled (|u - 0.5| > 0.3 with probability 0.4)
    assert near_depth > 400 and far_lr > 300


def _submit(b: StateBuilder) -> object:
    p = propose(b)
    assert p is not None
    b.add(TrialSubmitted(p.trial, 0, p.config, p.parent, p.phase, "", 0.0))
    return p


def _four_races(schedule: str) -> StateBuilder:
    s = Strategy(population_size=4, sample_size=2, cycles=100, reeval_count=3, reeval_schedule=schedule)
    b = StateBuilder(replay([created(s, NB201)]))
    for _ in range(4):
        _submit(b)
    for trial, metric in enumerate([1.0, 2.0, 3.0, 4.0]):  # each beats the incumbent: 4 races
        b.add(TrialCompleted(trial, 0, metric, 1.0, "w", 0.0))
    assert len(b.race) == 4
    return b


def test_parallel_schedule_runs_a_races_reevaluations_at_once_within_half_the_runs_in_flight():
    from evoq.proposal import reevals_in_flight

    b = _four_races("parallel")
    picks = []
    for i in range(8):  # eight free workers
        before = reevals_in_flight(b)
        picks.append(_submit(b))
        if picks[-1].phase == "reeval":  # the share: at most half the runs in flight, one always
            assert before < max(1, (i + 1) // 2)
    reevals = [p.parent for p in picks if p.phase == "reeval"]
    assert reevals[:2] == [3, 3]  # the best race first, both of its re-runs at once
    assert b.race[3].pending == 2 and len(reevals) == 4 and "evolve" in [p.phase for p in picks]


def test_serial_schedule_the_logged_behaviour_runs_one_reevaluation_per_race():
    b = _four_races("serial")
    picks = [_submit(b) for _ in range(6)]
    assert [(p.phase, p.parent) for p in picks[:4]] == [
        ("reeval", 3),
        ("reeval", 2),
        ("reeval", 1),
        ("reeval", 0),
    ]
    assert [p.phase for p in picks[4:]] == ["evolve", "evolve"]


@pytest.mark.parametrize("schedule", ["parallel", "serial"])
def test_reevaluations_hold_back_the_initial_population_only_under_the_serial_schedule(schedule):
    s = Strategy(population_size=4, sample_size=2, cycles=100, reeval_count=4, reeval_schedule=schedule)
    b = StateBuilder(replay([created(s, NB201)]))
    for _ in range(4):
        _submit(b)
    b.add(TrialCompleted(0, 0, 1.0, 1.0, "w", 0.0))  # the first result: its confirmation is due
    assert _submit(b).phase == "reeval"
    b.add(TrialFailed(1, 0, "error", "boom", "w", 0.0))  # ignored: the population needs a trial more
    nxt = propose(b)
    if schedule == "parallel":
        assert nxt is not None and nxt.phase == "init"  # the running re-evaluation does not count
    else:
        assert nxt is None  # serial: waits until the re-evaluation ends


def test_both_schedules_propose_the_same_with_one_worker():
    import zlib

    from evoq import simulate as sim
    from evoq.codec import decode
    from evoq.log import MemoryLog

    def noisy(config: dict) -> float:  # a config's quality plus noise that differs per evaluation
        noisy.n += 1
        return zlib.crc32(repr(sorted(config.items())).encode()) % 100 + (noisy.n * 7919) % 13

    noisy.n = 0
    for seed in range(3):
        runs = []
        for schedule in ("parallel", "serial"):
            noisy.n = 0
            s = Strategy(cycles=300, reeval_schedule=schedule)
            log = MemoryLog()
            sim.simulate(created(s, NB201, seed=seed), noisy, workers=1, log=log)
            subs = [decode(r) for _, r in log.read()]
            runs.append([(e.trial, e.phase, e.parent) for e in subs if isinstance(e, TrialSubmitted)])
        assert runs[0] == runs[1] and sum(phase == "reeval" for _, phase, _ in runs[0]) >= 3


def test_reeval_schedule_default_and_legacy():
    assert Strategy().reeval_schedule == "parallel"
    logged = Strategy(cycles=1000).to_dict()
    del logged["reeval_schedule"]  # a log written before the key: as that evoq did
    assert Strategy.from_dict(logged).reeval_schedule == "serial"
    with pytest.raises(ValueError, match="reeval_schedule"):
        Strategy(reeval_schedule="eager")


@given(st.integers(0, 2**64 - 1), st.integers(0, 300))
@settings(max_examples=300)
def test_the_tournament_shuffle_draws_exactly_what_random_shuffle_draws(seed, n):
    from evoq.proposal import shuffle

    a, b = random.Random(seed), random.Random(seed)
    xs, ys = list(range(n)), list(range(n))
    a.shuffle(xs)
    shuffle(ys, b)
    assert xs == ys and a.getstate() == b.getstate()
