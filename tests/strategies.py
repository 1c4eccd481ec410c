"""Hypothesis strategies for evoq events."""

from __future__ import annotations

from hypothesis import strategies as st

from evoq.events import (
    FAILURE_KINDS,
    FINISH_STATUSES,
    PHASES,
    ExperimentCreated,
    ExperimentExtended,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialProgressed,
    TrialStarted,
    TrialSubmitted,
)

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
text = st.text(max_size=20)
scalars = st.none() | st.booleans() | ints | floats | text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)
configs = st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6)

events = st.one_of(
    st.builds(
        ExperimentCreated,
        text,
        st.dictionaries(text, st.dictionaries(text, values, max_size=2), max_size=3),
        st.dictionaries(text, scalars, max_size=4),
        ints,
        text,
        text,
        floats,
    ),
    st.builds(TrialSubmitted, ints, ints, configs, st.none() | ints, st.sampled_from(PHASES), text, floats),
    st.builds(TrialStarted, ints, ints, text, floats),
    st.builds(TrialCompleted, ints, ints, floats, floats, text, floats),
    st.builds(TrialFailed, ints, ints, st.sampled_from(FAILURE_KINDS), text, text, floats),
    st.builds(ExperimentFinished, st.sampled_from(FINISH_STATUSES), text, floats),
    st.builds(ExperimentExtended, ints, text, floats),
    st.builds(TrialProgressed, ints, ints, ints, floats, floats),
)
