"""Hostile input: fuzzed records and log files, odd specs, foreign data under evoq's keys."""

from __future__ import annotations

import contextlib
import json

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evoq.codec import CodecError, decode
from evoq.reducer import StateBuilder
from evoq.spec import SpecError, parse_spec
from evoq.strategy import Strategy

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
TAGS = [
    "experiment_created",
    "trial_submitted",
    "trial_started",
    "trial_completed",
    "trial_failed",
    "experiment_finished",
]


@given(st.sampled_from(TAGS), st.integers(-2, 3), st.lists(msgpack_values, max_size=9))
@settings(max_examples=3000, deadline=None)
def test_structured_garbage_only_raises_codec_errors(tag, version, fields):
    try:
        data = msgpack.packb([tag, version, *fields])
    except (TypeError, ValueError, OverflowError):
        return
    with contextlib.suppress(CodecError):
        decode(data)


spec_values = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=10)
spec_shapes = st.fixed_dictionaries(
    {},
    optional={
        "name": spec_values,
        "trial": spec_values | st.just("tests.trials:quick"),
        "seed": spec_values,
        "strategy": st.dictionaries(
            st.sampled_from([*list(Strategy.__dataclass_fields__), "bogus"]), spec_values, max_size=5
        )
        | spec_values,
        "space": st.dictionaries(
            st.text(max_size=4),
            st.lists(spec_values, max_size=3)
            | st.dictionaries(
                st.sampled_from(["_type", "_value", "x"]), spec_values | st.lists(spec_values, max_size=3)
            ),
            max_size=3,
        )
        | spec_values,
        "extra": spec_values,
    },
)


@given(spec_shapes)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_spec_shape_is_accepted_or_rejected_with_spec_error(raw):
    try:
        parse_spec(raw)
    except SpecError as exc:
        assert str(exc)


def test_a_foreign_submission_outside_the_space_is_ignored():
    from ..sim import created

    b = StateBuilder()
    b.add(created(Strategy(population_size=2, sample_size=1), {"a": [1, 2]}))
    from evoq.events import TrialSubmitted

    b.add(TrialSubmitted(0, 0, {"a": 3}, None, "init", "", 0.0))
    b.add(TrialSubmitted(0, 0, {"b": 1}, None, "init", "", 0.0))
    assert b.next_trial == 0 and not b.running
    b.add(TrialSubmitted(0, 0, {"a": 2}, None, "init", "", 0.0))
    assert b.next_trial == 1
    assert json.dumps(b.freeze().population) == "[]"


def _created_fields() -> list:
    from evoq.codec import encode

    from ..sim import created

    return msgpack.unpackb(encode(created(Strategy(population_size=4, sample_size=2))), raw=False)


@given(st.sampled_from([*Strategy.__dataclass_fields__, "bogus"]), msgpack_values)
@settings(max_examples=1500, deadline=None)
def test_a_logged_strategy_value_is_folded_or_rejected_by_name_never_raised(key, value):
    """A stranger's ``experiment_created`` in the stream: any value under any strategy key."""
    from evoq.log import unpack_records

    fields = _created_fields()
    at = next(i for i, v in enumerate(fields) if isinstance(v, dict) and "cycles" in v)
    fields[at] = {**fields[at], key: value}
    b = StateBuilder()
    b.add_records(unpack_records([("1-0", msgpack.packb(fields))]))
    if b.experiment is None:
        assert len(b.rejections) == 1 and key in b.rejections[0].reason
    else:
        assert not b.rejections and b.strategy is not None
        if key == "reeval_schedule":  # an oracle of its own: only the two schedules fold
            assert value in ("parallel", "serial")
