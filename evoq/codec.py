"""The event codec: msgpack only, never pickle.

A record is one msgpack array ``[tag, version, field, ...]`` with the event's fields in the order
of its dataclass. Decoding is deliberate about types:

* msgpack arrays decode as **tuples** (hashable, immutable), so a list-valued choice comes back
  as a tuple; maps decode as dicts with string keys (anything else is rejected);
* floats are IEEE doubles, so ``nan`` and ``inf`` survive a round trip;
* every field is type-checked; a record that is truncated, garbled, of an unknown type, of a
  newer schema version, or with a field of the wrong type raises a :class:`CodecError` subclass
  that says what and where (``offset`` is the record's position in its log, when known).

Records written by older schema versions are brought up to date by *upcasters*: functions from a
``(tag, version)`` to the fields of ``version + 1``, applied in a chain before the event is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgpack

from .errors import EvoqError
from .events import (
    EVENT_TYPES,
    FAILURE_KINDS,
    FINISH_STATUSES,
    PHASES,
    Event,
    ExperimentCreated,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialStarted,
    TrialSubmitted,
)

SCHEMA_VERSION = 1
"""The schema version this evoq writes, for every event type."""

MAX_RECORD_BYTES = 16 * 1024 * 1024
"""Records larger than this are refused on write and reported as corrupt on read."""

TAGS: dict[type[Any], str] = {
    ExperimentCreated: "experiment_created",
    TrialSubmitted: "trial_submitted",
    TrialStarted: "trial_started",
    TrialCompleted: "trial_completed",
    TrialFailed: "trial_failed",
    ExperimentFinished: "experiment_finished",
}
_BY_TAG: dict[str, type[Any]] = {tag: cls for cls, tag in TAGS.items()}
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES
}

Upcaster = Callable[[list[Any]], list[Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""``(tag, version) -> function`` turning the fields of that version into those of ``version+1``."""


class CodecError(EvoqError, ValueError):
    """A record could not be decoded (or an event could not be encoded).

    Attributes:
        offset: where the record sits in its log (file byte offset, stream id, ...), or None.
    """

    def __init__(self, message: str, *, offset: int | str | None = None) -> None:
        self.offset = offset
        self.reason = message
        where = f"record at offset {offset}: " if offset is not None else ""
        super().__init__(where + message)


class CorruptRecordError(CodecError):
    """The bytes are not a well-formed evoq record (truncated, garbled, wrong field types)."""


class UnknownEventError(CodecError):
    """The record names an event type this evoq does not know."""


class UnsupportedVersionError(CodecError):
    """The record's schema version is newer than this evoq, or has no upcaster."""


_INT = (int,)
_NUM = (int, float)
_STR = (str,)
_DICT = (dict,)
_OPT_INT = (int, type(None))
# field kinds per event type, in field order
_KINDS: dict[type[Any], tuple[tuple[type, ...], ...]] = {
    ExperimentCreated: (_STR, _DICT, _DICT, _INT, _STR, _STR, _NUM),
    TrialSubmitted: (_INT, _INT, _DICT, _OPT_INT, _STR, _STR, _NUM),
    TrialStarted: (_INT, _INT, _STR, _NUM),
    TrialCompleted: (_INT, _INT, _NUM, _NUM, _STR, _NUM),
    TrialFailed: (_INT, _INT, _STR, _STR, _STR, _NUM),
    ExperimentFinished: (_STR, _STR, _NUM),
}
_ENUMS: dict[tuple[type[Any], int], tuple[str, ...]] = {
    (TrialSubmitted, 4): PHASES,
    (TrialFailed, 2): FAILURE_KINDS,
    (ExperimentFinished, 0): FINISH_STATUSES,
}

_packer = msgpack.Packer(use_bin_type=True, use_single_float=False, strict_types=False)


def encode(event: Event) -> bytes:
    """Encode one event as a msgpack record."""
    cls = type(event)
    tag = TAGS.get(cls)
    if tag is None:
        raise CodecError(f"cannot encode {cls.__name__}: not an evoq event")
    try:
        data: bytes = _packer.pack(to_record(event))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {cls.__name__}: {exc}") from None
    if len(data) > MAX_RECORD_BYTES:
        raise CodecError(f"{cls.__name__} encodes to {len(data)} bytes, over the {MAX_RECORD_BYTES} limit")
    return data


def unpack(data: bytes, *, offset: int | str | None = None) -> Any:
    """msgpack-decode one record with evoq's options (no type checks): the raw tuple."""
    try:
        return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises ValueError, TypeError and its own exceptions
        raise CorruptRecordError(
            f"not a msgpack record ({type(exc).__name__}: {exc})", offset=offset
        ) from None


def decode(data: bytes, *, offset: int | str | None = None) -> Event:
    """Decode one record into its event.

    Raises:
        CorruptRecordError: truncated or garbled bytes, or a field of the wrong type.
        UnknownEventError: an event type this evoq does not know.
        UnsupportedVersionError: a schema version newer than this evoq (or without upcaster).
    """
    return from_raw(unpack(data, offset=offset), offset=offset)


def from_raw(obj: Any, *, offset: int | str | None = None) -> Event:
    """Build the event from an unpacked record, checking its shape and field types."""
    rec = check_record(obj, offset=offset)
    event: Event = _BY_TAG[rec[0]](*rec[2:])
    return event


def to_record(event: Event) -> tuple[Any, ...]:
    """The record tuple ``(tag, version, *fields)`` of an event (what :func:`encode` packs)."""
    cls = type(event)
    return (TAGS[cls], SCHEMA_VERSION, *[getattr(event, f) for f in _FIELDS[cls]])


def check_record(obj: Any, *, offset: int | str | None = None) -> tuple[Any, ...]:
    """Validate an unpacked record and return it as ``(tag, SCHEMA_VERSION, *fields)``.

    Old versions are upcast; integers in float fields become floats. This is the gate every
    record passes before the reducer sees it; the per-type fast checks are generated from the
    field table so that a well-formed current record costs a few type tests.

    Raises:
        CorruptRecordError, UnknownEventError, UnsupportedVersionError: as for :func:`decode`.
    """
    if type(obj) is tuple and len(obj) >= 2:
        fast = _FAST_CHECKS.get(obj[0]) if type(obj[0]) is str else None
        if fast is not None and fast(obj):
            return obj
    return _slow_check(obj, offset)


def _slow_check(obj: Any, offset: int | str | None) -> tuple[Any, ...]:
    if type(obj) is not tuple or len(obj) < 2:
        raise CorruptRecordError("a record must be an array [type, version, fields...]", offset=offset)
    tag, version = obj[0], obj[1]
    cls = _BY_TAG.get(tag) if type(tag) is str else None
    if cls is None:
        raise UnknownEventError(f"unknown event type {tag!r}", offset=offset)
    fields: list[Any] = list(obj[2:])
    if version != SCHEMA_VERSION or type(version) is not int:
        fields = _upcast(tag, version, fields, offset)
    kinds = _KINDS[cls]
    if len(fields) != len(kinds):
        raise CorruptRecordError(
            f"{tag} v{SCHEMA_VERSION} has {len(kinds)} fields, record has {len(fields)}", offset=offset
        )
    for i, (value, kind) in enumerate(zip(fields, kinds, strict=True)):
        if type(value) not in kind:
            raise CorruptRecordError(
                f"{tag}.{_FIELDS[cls][i]} must be {'/'.join(k.__name__ for k in kind)}, "
                f"got {type(value).__name__}",
                offset=offset,
            )
        if kind is _NUM:
            fields[i] = float(value)
        allowed = _ENUMS.get((cls, i))
        if allowed is not None and value not in allowed:
            raise CorruptRecordError(
                f"{tag}.{_FIELDS[cls][i]} must be one of {allowed}, got {value!r}", offset=offset
            )
    return (tag, SCHEMA_VERSION, *fields)


# The fast checks: one per event type, written out (no code generation), each a chain of exact
# type tests in field order plus the enum tests. A record that passes is well formed at the
# current schema version; anything else goes through _slow_check, which converts ints in float
# fields, upcasts old versions and names the problem. tests/unit/test_codec.py checks that each
# agrees with _KINDS and _ENUMS.
_PHASES, _KINDS_F, _STATUSES = frozenset(PHASES), frozenset(FAILURE_KINDS), frozenset(FINISH_STATUSES)
_V = SCHEMA_VERSION


def _fast_created(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 9 and r[1] == _V and type(r[1]) is int and type(r[2]) is str and type(r[3]) is dict
        and type(r[4]) is dict and type(r[5]) is int and type(r[6]) is str and type(r[7]) is str
        and type(r[8]) is float
    )  # fmt: skip


def _fast_submitted(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 9 and r[1] == _V and type(r[1]) is int and type(r[2]) is int and type(r[3]) is int
        and type(r[4]) is dict and (r[5] is None or type(r[5]) is int) and type(r[6]) is str
        and r[6] in _PHASES and type(r[7]) is str and type(r[8]) is float
    )  # fmt: skip


def _fast_started(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 6 and r[1] == _V and type(r[1]) is int and type(r[2]) is int and type(r[3]) is int
        and type(r[4]) is str and type(r[5]) is float
    )  # fmt: skip


def _fast_completed(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 8 and r[1] == _V and type(r[1]) is int and type(r[2]) is int and type(r[3]) is int
        and type(r[4]) is float and type(r[5]) is float and type(r[6]) is str and type(r[7]) is float
    )  # fmt: skip


def _fast_failed(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 8 and r[1] == _V and type(r[1]) is int and type(r[2]) is int and type(r[3]) is int
        and type(r[4]) is str and r[4] in _KINDS_F and type(r[5]) is str and type(r[6]) is str
        and type(r[7]) is float
    )  # fmt: skip


def _fast_finished(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 5 and r[1] == _V and type(r[1]) is int and type(r[2]) is str and r[2] in _STATUSES
        and type(r[3]) is str and type(r[4]) is float
    )  # fmt: skip


_FAST_CHECKS: dict[str, Callable[[tuple[Any, ...]], bool]] = {
    TAGS[ExperimentCreated]: _fast_created,
    TAGS[TrialSubmitted]: _fast_submitted,
    TAGS[TrialStarted]: _fast_started,
    TAGS[TrialCompleted]: _fast_completed,
    TAGS[TrialFailed]: _fast_failed,
    TAGS[ExperimentFinished]: _fast_finished,
}


def _upcast(tag: str, version: Any, fields: list[Any], offset: int | str | None) -> list[Any]:
    if type(version) is not int or version < 1:
        raise CorruptRecordError(
            f"{tag}: schema version must be a positive integer, got {version!r}", offset=offset
        )
    if version > SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"{tag} has schema version {version}, newer than this evoq's {SCHEMA_VERSION}: "
            "upgrade evoq to read this log",
            offset=offset,
        )
    while version < SCHEMA_VERSION:
        step = UPCASTERS.get((tag, version))
        if step is None:
            raise UnsupportedVersionError(f"no upcaster for {tag} v{version}", offset=offset)
        fields = step(fields)
        version += 1
    return fields
