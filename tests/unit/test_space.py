import json
import math
import random

import pytest

from evoq.space import Choice, RandInt, SearchSpace, SpaceError, Uniform


def test_plain_mapping_and_nni_format_keep_order():
    space = SearchSpace.parse(
        {
            "z": [1, 2],
            "a": {"_type": "choice", "_value": ["x", "y"]},
            "m": {"_type": "randint", "_value": [0, 3]},
            "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
            "q": {"_type": "quniform", "_value": [0, 10, 2.5]},
            "ql": {"_type": "qloguniform", "_value": [1, 1000, 10]},
            "u": {"_type": "uniform", "_value": [-1, 1]},
        }
    )
    assert space.names == ("z", "a", "m", "lr", "q", "ql", "u")
    assert isinstance(space.params[0], Choice) and isinstance(space.params[2], RandInt)
    assert SearchSpace.parse(space.spec()) == space
    assert SearchSpace.parse(json.loads(json.dumps(space.spec()))) == space


def test_nni_semantics_of_each_type():
    rng = random.Random(0)
    ri = RandInt("r", 2, 5)
    assert {ri.sample(rng) for _ in range(500)} == {2, 3, 4}  # upper bound exclusive
    q = Uniform("q", 0.0, 10.0, q=2.5)
    values = {q.sample(rng) for _ in range(500)}
    assert values <= {0.0, 2.5, 5.0, 7.5, 10.0} and len(values) == 5
    lg = Uniform("l", 1e-4, 1e-1, log=True)
    xs = [lg.sample(rng) for _ in range(2000)]
    assert all(1e-4 <= x <= 1e-1 for x in xs)
    # log-uniform: about half the mass below the geometric mean
    below = sum(x < math.sqrt(1e-4 * 1e-1) for x in xs) / len(xs)
    assert 0.45 < below < 0.55
    ql = Uniform("ql", 1.0, 1000.0, q=10.0, log=True)
    assert all(v == 1.0 or v % 10 == 0 for v in (ql.sample(rng) for _ in range(500)))
    assert all(1.0 <= ql.sample(rng) <= 1000.0 for _ in range(500))


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"p": []}, ["'p'", "empty choice list"]),
        ({"p": {"_type": "choice", "_value": "abc"}}, ["'p'", "_value must be a list"]),
        ({"p": {"_type": "gamma", "_value": [0, 1]}}, ["'p'", "'gamma'", "not supported"]),
        ({"p": {"_type": "normal", "_value": [0, 0]}}, ["'p'", "sigma must be positive"]),
        ({"p": {"_type": "qnormal", "_value": [0, 1]}}, ["'p'", "[mu, sigma, q]"]),
        ({"p": {"_type": "lognormal", "_value": [700, 1]}}, ["'p'", "overflow"]),
        ({"p": [{"_name": "a"}, {"x": 1}]}, ["'p'", "every choice"]),
        ({"p": [{"_name": "a"}, {"_name": "a"}]}, ["'p'", "two branches"]),
        (
            {"p": [{"_name": "a", "x": {"_type": "uniform", "_value": [1, 0]}}]},
            ["'p'", "'a'", "'x'", "low >= high"],
        ),
        ({"p": [{1: 2}]}, ["'p'", "keys must be strings"]),
        ({"_name": [1, 2]}, ["_name"]),
        ({"p": {"_type": "uniform", "_value": [1, 1]}}, ["'p'", "low >= high"]),
        ({"p": {"_type": "randint", "_value": [5, 2]}}, ["'p'", "low >= high"]),
        ({"p": {"_type": "loguniform", "_value": [0, 1]}}, ["'p'", "positive"]),
        ({"p": {"_type": "qloguniform", "_value": [-1, 1, 1]}}, ["'p'", "positive"]),
        ({"p": {"_type": "quniform", "_value": [0, 1]}}, ["'p'", "[low, high, q]"]),
        ({"p": {"_type": "quniform", "_value": [0, 1, 0]}}, ["'p'", "q must be positive"]),
        ({"p": {"_type": "quniform", "_value": [0, 1e308, 1e-300]}}, ["'p'", "too small", "2**53"]),
        ({"p": {"_type": "qnormal", "_value": [1e300, 1, 1e-300]}}, ["'p'", "too small"]),
        ({"p": {"_type": "qlognormal", "_value": [600, 10, 1e-9]}}, ["'p'"]),
        ({"p": {"_type": "choice", "_value": [{"_name": "a", "x": 1}]}}, ["'p'", "'a'", "'x'"]),
        ({"p": [object()]}, ["'p'", "msgpack"]),
        ({"p": [2**70]}, ["'p'", "64 bits"]),
        ({"p": {"_value": [1]}}, ["'p'", "missing _type"]),
        ({"p": {"_type": "choice"}}, ["'p'", "missing _value"]),
        ({"p": {"_type": "choice", "_value": [1], "x": 2}}, ["'p'", "unknown key"]),
        ({"p": {"_type": "uniform", "_value": [0, float("inf")]}}, ["'p'", "finite"]),
        ({"p": {"_type": "uniform", "_value": ["a", 1]}}, ["'p'", "number"]),
        ({"p": 3}, ["'p'", "expected a list"]),
        ({}, ["no parameters"]),
        ({"": [1]}, ["non-empty"]),
    ],
)
def test_invalid_spaces_name_parameter_and_problem(raw, words):
    with pytest.raises(SpaceError) as info:
        SearchSpace.parse(raw)
    for w in words:
        assert w in str(info.value)


def test_list_choices_become_tuples_and_check_config():
    space = SearchSpace.parse({"shape": [[1, 2], [3, 4]], "n": {"_type": "randint", "_value": [0, 2]}})
    assert space.params[0].values == ((1, 2), (3, 4))
    space.check({"shape": (1, 2), "n": 1})
    with pytest.raises(SpaceError, match="'n'"):
        space.check({"shape": (1, 2), "n": 2})
    with pytest.raises(SpaceError, match="missing"):
        space.check({"shape": (1, 2)})
    assert space.key({"shape": (1, 2), "n": 1}) == ((1, 2), 1)
    assert space.key({"n": 1}) == (None, 1)  # a malformed config still gets a key


def test_different_values():
    rng = random.Random(1)
    c = Choice("c", (1, 2, 3))
    assert all(c.different(rng, 2) != 2 for _ in range(100))
    assert Choice("c", (1,)).different(rng, 1) is None
    r = RandInt("r", 0, 3)
    assert all(r.different(rng, 1) in (0, 2) for _ in range(100))
    assert RandInt("r", 0, 1).different(rng, 0) is None
    assert SearchSpace.parse({"a": [1, 2], "b": {"_type": "randint", "_value": [0, 3]}}).size() == 6
    assert SearchSpace.parse({"u": {"_type": "uniform", "_value": [0, 1]}}).size() == math.inf


# -- NNI parity: normal types, nested choices, plain mappings ----------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from evoq.codec import decode, encode  # noqa: E402
from evoq.events import TrialSubmitted  # noqa: E402
from evoq.space import NestedChoice, Normal, freeze, get_path  # noqa: E402

# NNI's documented nested search space (examples/trials/mnist-nested-search-space) and the
# config NNI hands its trial (its sample.json)
_LAYER = {
    "_type": "choice",
    "_value": [
        {"_name": "Empty"},
        {"_name": "Conv", "kernel_size": {"_type": "choice", "_value": [1, 2, 3, 5]}},
        {"_name": "Max_pool", "pooling_size": {"_type": "choice", "_value": [2, 3, 5]}},
        {"_name": "Avg_pool", "pooling_size": {"_type": "choice", "_value": [2, 3, 5]}},
    ],
}
NNI_NESTED = {f"layer{i}": _LAYER for i in range(4)}
NNI_SAMPLE = {
    "layer0": {"_name": "Avg_pool", "pooling_size": 3},
    "layer1": {"_name": "Conv", "kernel_size": 2},
    "layer2": {"_name": "Empty"},
    "layer3": {"_name": "Conv", "kernel_size": 5},
}


def test_nni_nested_example_loads_and_holds_nnis_trial_config():
    space = SearchSpace.parse(json.loads(json.dumps(NNI_NESTED)))
    assert all(isinstance(p, NestedChoice) for p in space.params)
    assert SearchSpace.parse(space.spec()) == space
    assert space.contains(NNI_SAMPLE)
    space.check(NNI_SAMPLE)
    assert space.size() == (1 + 4 + 3 + 3) ** 4
    bad = {**NNI_SAMPLE, "layer2": {"_name": "Empty", "kernel_size": 3}}  # a parameter of another branch
    assert not space.contains(bad)
    with pytest.raises(SpaceError, match="'layer2'"):
        space.check(bad)
    assert not space.contains({**NNI_SAMPLE, "layer1": {"_name": "Conv", "kernel_size": 4}})
    assert not space.contains({**NNI_SAMPLE, "layer1": {"_name": "Deconv"}})
    rng = random.Random(3)
    seen = set()
    for _ in range(300):
        c = space.sample(rng)
        assert space.contains(c)
        subs = {
            "Empty": set(),
            "Conv": {"kernel_size"},
            "Max_pool": {"pooling_size"},
            "Avg_pool": {"pooling_size"},
        }
        for v in c.values():  # the branch's parameters exist exactly when it is chosen
            assert set(v) == {"_name"} | subs[v["_name"]]
        seen.add(c["layer0"]["_name"])
        hash(space.key(c))
    assert seen == {"Empty", "Conv", "Max_pool", "Avg_pool"}


def test_nested_configs_round_trip_through_the_codec_and_keys_ignore_key_order():
    space = SearchSpace.parse(NNI_NESTED)
    e = TrialSubmitted(0, 0, NNI_SAMPLE, None, "init", "", 0.0)
    back = decode(encode(e)).config
    assert back == NNI_SAMPLE and space.contains(back)
    swapped = {k: dict(reversed(list(v.items()))) for k, v in NNI_SAMPLE.items()}
    assert space.key(swapped) == space.key(NNI_SAMPLE)
    other = {**NNI_SAMPLE, "layer0": {"_name": "Max_pool", "pooling_size": 3}}
    assert space.key(other) != space.key(NNI_SAMPLE)


def test_deeper_nesting_and_flattened_dimensions():
    space = SearchSpace.parse(
        {
            "opt": [
                {"_name": "sgd", "lr": {"_type": "loguniform", "_value": [1e-4, 1]},
                 "momentum": [{"_name": "none"}, {"_name": "nesterov", "m": {"_type": "uniform", "_value": [0, 1]}}]},
                {"_name": "adam", "beta": [0.9, 0.99]},
            ],
            "depth": {"_type": "randint", "_value": [1, 4]},
        }
    )  # fmt: skip
    c = {"opt": {"_name": "sgd", "lr": 0.01, "momentum": {"_name": "nesterov", "m": 0.5}}, "depth": 2}
    assert space.contains(c)
    paths = [path for path, _ in space.dims(c)]
    assert paths == [("opt",), ("opt", "lr"), ("opt", "momentum"), ("opt", "momentum", "m"), ("depth",)]
    assert get_path(c, ("opt", "momentum", "m")) == 0.5
    adam = {"opt": {"_name": "adam", "beta": 0.9}, "depth": 1}
    assert [path for path, _ in space.dims(adam)] == [("opt",), ("opt", "beta"), ("depth",)]


def test_choice_of_plain_mappings():
    space = SearchSpace.parse(
        {"opt": [{"lr": 0.1, "betas": [0.9, 0.99]}, {"lr": 0.01, "betas": [0.8, 0.9]}], "n": [1, 2]}
    )
    rng = random.Random(0)
    values = {freeze(space.sample(rng)["opt"]) for _ in range(50)}
    assert len(values) == 2
    c = {"opt": {"betas": (0.9, 0.99), "lr": 0.1}, "n": 2}  # key order does not matter; lists are tuples
    assert space.contains(c)
    assert decode(encode(TrialSubmitted(0, 0, c, None, "init", "", 0.0))).config == c
    assert not space.contains({"opt": {"lr": 0.1}, "n": 2})
    assert space.size() == 4
    assert SearchSpace.parse(json.loads(json.dumps(space.spec()))) == space


def test_normal_types_follow_nni():
    rng = random.Random(1)
    n = Normal("n", 1.0, 2.0)
    xs = [n.sample(rng) for _ in range(4000)]
    mean = sum(xs) / len(xs)
    sd = (sum((x - mean) ** 2 for x in xs) / len(xs)) ** 0.5
    assert abs(mean - 1.0) < 0.1 and abs(sd - 2.0) < 0.1
    qn = Normal("q", 0.0, 5.0, q=2.0)
    assert all(v % 2 == 0 for v in (qn.sample(rng) for _ in range(500)))  # round(x / q) * q, no clip
    ln = Normal("l", 0.0, 1.0, log=True)
    ls = [ln.sample(rng) for _ in range(4000)]
    assert all(v > 0 for v in ls)
    assert 0.45 < sum(v < 1.0 for v in ls) / len(ls) < 0.55  # median exp(mu) = 1
    qln = Normal("ql", 0.0, 1.0, q=0.5, log=True)
    qs = [qln.sample(rng) for _ in range(500)]
    assert all(v >= 0 and v % 0.5 == 0 for v in qs) and 0.0 in qs  # exp(x) < q/2 rounds to 0
    space = SearchSpace.parse(
        {k: {"_type": k, "_value": v} for k, v in
         {"normal": [0, 1], "qnormal": [0, 1, 0.5], "lognormal": [0, 1], "qlognormal": [1, 1, 1]}.items()}
    )  # fmt: skip
    assert [p.type for p in space.params] == ["normal", "qnormal", "lognormal", "qlognormal"]
    assert SearchSpace.parse(space.spec()) == space and space.size() == math.inf
    assert not space.contains({"normal": 0.0, "qnormal": 0.0, "lognormal": 0.0, "qlognormal": 1.0})


ORDERED = [
    Choice("c", (64, 8, 16, 32)),
    RandInt("r", 0, 50),
    RandInt("r2", 3, 5),
    Uniform("u", -1.0, 1.0),
    Uniform("q", 0.0, 10.0, q=2.5),
    Uniform("l", 1e-4, 1e-1, log=True),
    Uniform("ql", 1.0, 1000.0, q=10.0, log=True),
    Normal("n", 0.0, 1.0),
    Normal("qn", 0.0, 3.0, q=1.0),
    Normal("qln", 0.0, 1.0, q=0.5, log=True),
]


@given(st.integers(0, 2**32), st.sampled_from(ORDERED))
@settings(max_examples=300, deadline=None)
def test_local_moves_stay_inside_and_change_the_value(seed, param):
    rng = random.Random(seed)
    current = param.sample(rng)
    new = param.nearby(rng, current)
    assert new is not None and new != current and param.contains(new)


def test_local_moves_are_mostly_neighbours_on_short_lists():
    c = Choice("c", (16, 32, 64, 128, 256, 512))
    rng = random.Random(0)
    steps = [abs(c.order.index(c.nearby(rng, 64)) - 2) for _ in range(2000)]
    assert 0.8 < steps.count(1) / len(steps) < 0.95 and max(steps) <= 3
    assert {c.nearby(rng, 16) for _ in range(200)} <= {32, 64, 128}  # reflected at the end
    assert Choice("s", ("a", "b", "c")).nearby(rng, "a") in ("b", "c")  # unordered: another value
    u = Uniform("u", 0.0, 1.0)
    assert sum(abs(u.nearby(rng, 0.5) - 0.5) < 0.2 for _ in range(1000)) > 600  # a fifth of the range


def test_quantized_uniforms_with_integer_steps_and_bounds_give_ints():
    import random

    from evoq.proposal import mutate
    from evoq.strategy import Strategy

    space = SearchSpace.parse({
        "layers": {"_type": "quniform", "_value": [1, 8, 1]},
        "units": {"_type": "qloguniform", "_value": [16, 1024, 16]},
        "rate": {"_type": "quniform", "_value": [0, 1, 0.25]},
    })  # fmt: skip
    rng = random.Random(3)
    for _ in range(200):
        c = space.sample(rng)
        assert type(c["layers"]) is int and type(c["units"]) is int and type(c["rate"]) is float
        assert space.contains(c) and c["units"] % 16 == 0
        child = mutate(c, space, Strategy(mutation="local", mutation_prob=0.5), rng)
        assert type(child["layers"]) is int and type(child["units"]) is int and space.contains(child)
