import pytest

from evoq.strategy import Strategy


def test_defaults_and_nni_mode():
    s = Strategy()
    assert (s.optimize_mode, s.cycles, s.mutation_prob, s.on_failure) == ("maximize", 20000, 0.05, "ignore")
    assert (s.population_size, s.sample_size, s.reeval_count, s.mutation) == (50, 25, 10, "neighbour")
    assert s.dedup and s.child_differs
    n = Strategy.nni()
    assert not n.dedup and not n.child_differs
    assert (n.population_size, n.sample_size, n.reeval_count, n.mutation) == (100, 25, 1, "resample")


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"sample_size": 100}, "sample_size"),
        ({"population_size": 10, "sample_size": 20}, "sample_size"),
        ({"mutation_prob": 1.5}, "mutation_prob"),
        ({"mutation_prob": -0.1}, "mutation_prob"),
        ({"optimize_mode": "max"}, "optimize_mode"),
        ({"on_failure": "retry"}, "on_failure"),
        ({"cycles": 0}, "cycles"),
        ({"population_size": True}, "population_size"),
        ({"max_failures": -1}, "max_failures"),
        ({"trial_timeout": 0}, "trial_timeout"),
        ({"prefetch": -1}, "prefetch"),
        ({"dedup": "yes"}, "dedup"),
    ],
)
def test_invalid_parameters_raise_value_error(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Strategy(**kwargs)


def test_dict_round_trip_and_unknown_keys():
    s = Strategy(population_size=20, sample_size=5, trial_timeout=30.0)
    assert Strategy.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="populaton_size"):
        Strategy.from_dict({"populaton_size": 3})
    assert Strategy().worst == float("-inf") and Strategy(optimize_mode="minimize").worst == float("inf")


@pytest.mark.parametrize(
    "kwargs, sizes",
    [
        ({}, (50, 25)),  # one rule for every budget: the unset cycles (20000) too
        ({"cycles": 100}, (33, 16)),  # budget-aware when neither size is given
        ({"cycles": 12}, (10, 5)),
        ({"cycles": 1000}, (50, 25)),
        ({"cycles": 1001}, (50, 25)),  # no jump above 1000 any more
        ({"cycles": 3000}, (50, 25)),
        ({"cycles": 100, "population_size": 20}, (20, 10)),  # only P given: S = min(25, P // 2)
        ({"cycles": 100, "population_size": 80}, (80, 25)),
        ({"cycles": 100, "sample_size": 5}, (100, 5)),  # only S given: NNI's P
        ({"cycles": 100, "population_size": 7, "sample_size": 6}, (7, 6)),  # both given: exactly those
    ],
)
def test_unset_sizes_are_resolved_and_recorded(kwargs, sizes):
    s = Strategy(**kwargs)
    assert (s.population_size, s.sample_size) == sizes
    assert Strategy.from_dict(s.to_dict()) == s  # the log holds the resolved values
    if "population_size" not in kwargs and "sample_size" not in kwargs:
        nni = Strategy.nni(**kwargs)
        assert (nni.population_size, nni.sample_size) == (100, 25)


def test_logged_strategies_without_new_keys_mean_the_old_behaviour():
    """A strategy logged before a key existed re-derives the old decisions, whatever the defaults."""
    old = Strategy(population_size=20, sample_size=5).to_dict()
    for key in ("reeval_count", "mutation"):
        del old[key]
    logged = Strategy.from_dict(old)
    assert (logged.reeval_count, logged.mutation) == (1, "resample")
    fresh = Strategy.from_spec({"population_size": 20, "sample_size": 5})
    assert Strategy.from_dict(fresh.to_dict()) == fresh  # a full logged dict is taken as it is
    spec = Strategy.from_spec({})
    assert (spec.reeval_count, spec.mutation) == (Strategy().reeval_count, Strategy().mutation)
    nni = Strategy.nni()
    assert (nni.reeval_count, nni.mutation, nni.dedup, nni.child_differs) == (1, "resample", False, False)
    with pytest.raises(ValueError, match="mutation"):
        Strategy(mutation="swap")
    with pytest.raises(ValueError, match="reeval_count"):
        Strategy(reeval_count=0)


@pytest.mark.parametrize(
    "cycles, r", [(1, 1), (100, 1), (199, 1), (200, 3), (299, 3), (300, 4), (500, 6), (900, 10), (20000, 10)]
)
def test_unset_reeval_count_follows_the_budget_and_is_recorded(cycles, r):
    s = Strategy(cycles=cycles)
    assert s.reeval_count == r
    assert Strategy.from_dict(s.to_dict()).reeval_count == r  # the log holds the resolved value
    assert Strategy(cycles=cycles, reeval_count=2).reeval_count == 2  # a set value is kept
