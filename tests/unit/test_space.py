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
        ({"p": {"_type": "normal", "_value": [0, 1]}}, ["'p'", "'normal'", "not supported"]),
        ({"p": {"_type": "uniform", "_value": [1, 1]}}, ["'p'", "low >= high"]),
        ({"p": {"_type": "randint", "_value": [5, 2]}}, ["'p'", "low >= high"]),
        ({"p": {"_type": "loguniform", "_value": [0, 1]}}, ["'p'", "positive"]),
        ({"p": {"_type": "qloguniform", "_value": [-1, 1, 1]}}, ["'p'", "positive"]),
        ({"p": {"_type": "quniform", "_value": [0, 1]}}, ["'p'", "[low, high, q]"]),
        ({"p": {"_type": "quniform", "_value": [0, 1, 0]}}, ["'p'", "q must be positive"]),
        ({"p": {"_type": "choice", "_value": [{"_name": "a", "x": 1}]}}, ["'p'", "nested"]),
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
