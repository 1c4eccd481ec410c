import contextlib
import json
import math
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evoq import codec
from evoq.codec import (
    CodecError,
    CorruptRecordError,
    UnknownEventError,
    UnsupportedVersionError,
    decode,
    encode,
)
from evoq.events import TrialCompleted, TrialSubmitted
from evoq.filelog import FileLog
from evoq.log import replay_log
from evoq.report import summary

from ..strategies import events

GOLDEN = Path(__file__).parent.parent / "golden"


def same(a, b):
    """Structural equality where nan equals nan."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return type(a) is type(b) and a == b


@given(events)
@settings(max_examples=300)
def test_every_event_round_trips(event):
    data = encode(event)
    back = decode(data)
    assert same(back, event)
    assert encode(back) == data


def test_nan_inf_and_tuples_are_deliberate():
    e = TrialCompleted(1, 0, float("nan"), float("inf"), "w", -math.inf)
    back = decode(encode(e))
    assert math.isnan(back.metric) and back.duration == math.inf and back.at == -math.inf
    s = TrialSubmitted(0, 0, {"shape": [1, [2, 3]]}, None, "init", "", 0.0)
    assert decode(encode(s)).config == {"shape": (1, (2, 3))}  # arrays decode as tuples
    # integers in float fields are accepted and normalised
    raw = msgpack.packb(["trial_completed", 1, 1, 0, 3, 2, "w", 5])
    back = decode(raw)
    assert back.metric == 3.0 and type(back.metric) is float and type(back.at) is float


@pytest.mark.parametrize(
    "obj, error, words",
    [
        (["trial_exploded", 1, 0], UnknownEventError, ["unknown event type", "'trial_exploded'"]),
        (["trial_started", 99, 0, 0, "w", 0.0], UnsupportedVersionError, ["version 99", "newer"]),
        (["trial_started", 0, 0, 0, "w", 0.0], CorruptRecordError, ["schema version"]),
        (["trial_started", 1, 0, 0, "w"], CorruptRecordError, ["4 fields", "has 3"]),
        (["trial_started", 1, "0", 0, "w", 0.0], CorruptRecordError, ["trial_started.trial", "int"]),
        (["trial_started", 1, True, 0, "w", 0.0], CorruptRecordError, ["trial_started.trial"]),
        (["trial_failed", 1, 0, 0, "meltdown", "m", "w", 0.0], CorruptRecordError, ["kind", "meltdown"]),
        (["trial_submitted", 1, 0, 0, {}, None, "grow", "", 0.0], CorruptRecordError, ["phase"]),
        ({"a": 1}, CorruptRecordError, ["array"]),
        (7, CorruptRecordError, ["array"]),
    ],
)
def test_bad_records_raise_typed_errors_with_offset(obj, error, words):
    with pytest.raises(error) as info:
        decode(msgpack.packb(obj), offset=1234)
    assert info.value.offset == 1234
    assert "offset 1234" in str(info.value)
    for w in words:
        assert w in str(info.value)


def test_truncated_and_garbled_bytes():
    data = encode(TrialCompleted(1, 0, 0.5, 1.0, "w", 0.0))
    for cut in range(len(data)):
        with pytest.raises(CodecError) as info:
            decode(data[:cut], offset=cut)
        assert info.value.offset == cut
    with pytest.raises(CorruptRecordError):
        decode(data + b"\x00")  # trailing garbage
    with pytest.raises(CorruptRecordError):
        decode(b"\xc1")  # a byte msgpack never uses


@given(st.binary(max_size=64))
@settings(max_examples=2000)
def test_arbitrary_bytes_only_raise_codec_errors(data):
    with contextlib.suppress(CodecError):
        decode(data)


def test_encode_refuses_non_events_and_uncarriable_values():
    with pytest.raises(CodecError):
        encode(object())  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="TrialSubmitted"):
        encode(TrialSubmitted(0, 0, {"a": object()}, None, "init", "", 0.0))


def test_upcasters_bring_old_versions_forward(monkeypatch):
    """v1 and v2 records are read by a (future) v3 evoq through its upcaster chain."""
    monkeypatch.setattr(codec, "SCHEMA_VERSION", 3)
    # pretend v3 changed nothing but v2 'worker' names lacked a prefix: the upcaster adds it
    monkeypatch.setitem(codec.UPCASTERS, ("trial_started", 2), lambda f: [f[0], f[1], "host:" + f[2], f[3]])
    monkeypatch.setattr(codec, "_FAST_CHECKS", {})
    for version in (1, 2):
        old = msgpack.packb(["trial_started", version, 3, 0, "w1", 1.0])
        assert decode(old).worker == "host:w1"
    with pytest.raises(UnsupportedVersionError, match="no upcaster"):
        decode(msgpack.packb(["trial_completed", 2, 3, 0, 1.0, 1.0, "w", 1.0]))


def test_version_one_records_read_as_they_were_and_new_values_are_refused_in_them():
    assert decode(msgpack.packb(["trial_failed", 1, 3, 0, "lost", "m", "w", 1.0])).kind == "lost"
    with pytest.raises(CorruptRecordError, match="v1"):
        decode(msgpack.packb(["trial_failed", 1, 3, 0, "refused", "m", "w", 1.0]))
    with pytest.raises(CorruptRecordError, match="does not exist in schema version 1"):
        decode(msgpack.packb(["trial_progressed", 1, 3, 0, 1, 0.5, 1.0]))
    with pytest.raises(UnsupportedVersionError, match="newer"):
        decode(msgpack.packb(["trial_started", codec.SCHEMA_VERSION + 1, 3, 0, "w1", 1.0]))


def test_events_are_written_in_the_experiment_s_version_for_older_readers():
    from evoq.events import TrialFailed, TrialProgressed

    refused = TrialFailed(3, 0, "refused", "not allowed here", "w", 1.0)
    old = msgpack.unpackb(encode(refused, version=1))
    assert old == ["trial_failed", 1, 3, 0, "lost", "refused: not allowed here", "w", 1.0]
    with pytest.raises(CodecError, match="no form in schema version 1"):
        encode(TrialProgressed(3, 0, 1, 0.5, 1.0), version=1)
    assert decode(encode(refused)) == refused


def test_fast_checks_agree_with_the_slow_check():
    """The written-out fast checks accept exactly the well-formed records of their type."""
    from hypothesis import given as hgiven

    from ..strategies import events as event_strategy

    @hgiven(event_strategy)
    @settings(max_examples=300)
    def check(event):
        rec = codec.to_record(event)
        fast = codec._FAST_CHECKS[rec[0]]
        assert fast(rec) and codec._slow_check(rec, None) == rec
        for i in range(2, len(rec)):  # any field of another type fails both checks
            bad = (*rec[:i], object(), *rec[i + 1 :])
            assert not fast(bad)
            with pytest.raises(CodecError):
                codec._slow_check(bad, None)

    check()


@pytest.mark.parametrize("stem", sorted(p.stem for p in GOLDEN.glob("*.evoqlog")))
def test_golden_logs_replay_to_their_recorded_state(stem):
    log = FileLog(GOLDEN / f"{stem}.evoqlog")
    expected = json.loads((GOLDEN / f"{stem}.state.json").read_text())
    state = replay_log(log).freeze()
    got = json.loads(json.dumps(summary(state), sort_keys=True))
    assert {k: got[k] for k in expected} == expected  # every key recorded then, unchanged
    # keys added since: an old log has no re-evaluation, so the incumbent is the best single result
    assert got["reevaluated"] == 0
    assert got["incumbent"] == {**expected["best"], "evaluations": 1}
    assert state.status == "completed" and state.results == expected["cycles"]


def test_golden_log_for_current_versions_exists():
    from evoq.filelog import MAGIC

    assert (GOLDEN / f"schema{codec.SCHEMA_VERSION}-file{MAGIC[-1:].decode()}.evoqlog").exists()


def test_shape_limits_count_nesting_and_containers_not_scalars():
    """A choice of 100,000 values is a legitimate space (a review found the first limit, which
    counted scalars, made such an experiment's log unreadable by its own controller); depth and
    the number of maps and arrays are what is bounded, and a spec beyond them is refused before
    anything is logged."""
    from evoq.codec import MAX_DEPTH, MAX_ITEMS, CorruptRecordError, check_shape, to_record
    from evoq.events import ExperimentCreated
    from evoq.spec import SpecError, parse_spec

    spec = parse_spec({"name": "big", "trial": "m:f", "space": {"x": list(range(100_000))}})
    check_shape(to_record(spec.created()))
    swollen = ExperimentCreated(
        "s", {"x": {"_type": "choice", "_value": [{}] * (MAX_ITEMS + 1)}}, {}, 0, "m:f", "t", 0.0
    )
    with pytest.raises(CorruptRecordError, match="maps and arrays"):
        check_shape(to_record(swollen))
    deep: object = 1
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(SpecError, match=f"nested deeper than {MAX_DEPTH}"):
        parse_spec({"name": "deep", "trial": "m:f", "space": {"x": {"_type": "choice", "_value": [deep, 2]}}})
