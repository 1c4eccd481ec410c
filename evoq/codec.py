"""The event codec: msgpack only, never pickle.

A record is one msgpack array ``[tag, version, field, ...]`` with the event's fields in the order
of its dataclass. Decoding is deliberate about types:

* msgpack arrays decode as **tuples** (hashable, immutable), so a list-valued choice comes back
  as a tuple; maps decode as dicts with string keys (anything else is rejected);
* floats are IEEE doubles, so ``nan`` and ``inf`` survive a round trip;
* every field is type-checked; a record that is truncated, garbled, too large, of an unknown
  type, of a newer schema version, or with a field of the wrong type raises a
  :class:`CodecError` subclass that says what and where (``offset`` is the record's position in
  its log, when known). The reducer turns such a record into a *rejected record* — skipped,
  counted and reported — instead of stopping.

Schema versions. Version 1 has six event types. Version 2 adds ``experiment_extended`` and
``trial_progressed``, the phase ``reeval`` and the failure kind ``refused``; the fields of the
six older types are unchanged. Records of an older version are brought up to date by *upcasters*
(``(tag, version) -> fields of version + 1``) before the event is built; :func:`encode` can also
write an event in an older version (``version=``), which is how a newer worker reports to an
experiment created by an older evoq (:func:`downcast`).

One size limit, :data:`MAX_RECORD_BYTES`, holds for every record: writers refuse larger ones and
the fold rejects them unread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgpack

from .errors import EvoqError
from .events import (
    EVENT_TYPES,
    FINISH_STATUSES,
    Event,
    ExperimentCreated,
    ExperimentExtended,
    ExperimentFinished,
    TrialCompleted,
    TrialFailed,
    TrialProgressed,
    TrialStarted,
    TrialSubmitted,
)

SCHEMA_VERSION = 2
"""The schema version this evoq writes."""

MAX_RECORD_BYTES = 1024 * 1024
"""The one size limit of a record (1 MiB): refused on write, rejected unread by the fold."""

MSGPACK_UNPACK = {"raw": False, "use_list": False, "strict_map_key": True}
"""The msgpack options every record is unpacked with (arrays as tuples, string map keys)."""

UNREADABLE_TAG = "unreadable_entry"
"""Tag of the stand-in record ``evoq export`` writes for a stream entry it cannot carry (no
record field, or over the size limit): ``[tag, 1, stream id, reason, size, blake2b hex]``. The
fold rejects it with the carried reason."""

TAGS: dict[type[Any], str] = {
    ExperimentCreated: "experiment_created",
    TrialSubmitted: "trial_submitted",
    TrialStarted: "trial_started",
    TrialCompleted: "trial_completed",
    TrialFailed: "trial_failed",
    ExperimentFinished: "experiment_finished",
    ExperimentExtended: "experiment_extended",
    TrialProgressed: "trial_progressed",
}
_BY_TAG: dict[str, type[Any]] = {tag: cls for cls, tag in TAGS.items()}
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES
}

_V1_TAGS = frozenset(TAGS[c] for c in EVENT_TYPES[:6])
_PHASES = {1: ("init", "evolve"), 2: ("init", "evolve", "reeval")}
_KINDS_BY_VERSION = {
    1: ("error", "invalid_metric", "timeout", "lost", "preempted"),
    2: ("error", "invalid_metric", "timeout", "lost", "preempted", "refused"),
}
INTRODUCED: dict[str, int] = {tag: (1 if tag in _V1_TAGS else 2) for tag in _BY_TAG}
"""The schema version in which each event type appeared."""

Upcaster = Callable[[list[Any]], list[Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {(tag, 1): (lambda fields: fields) for tag in _V1_TAGS}
"""``(tag, version) -> function`` turning the fields of that version into those of ``version+1``
(v1 -> v2 changes no field: only new values and types were added)."""


class CodecError(EvoqError, ValueError):
    """A record could not be decoded (or an event could not be encoded).

    Attributes:
        offset: where the record sits in its log (file byte offset, stream id, ...), or None.
        reason: the message without the location.
    """

    def __init__(self, message: str, *, offset: int | str | None = None) -> None:
        self.offset = offset
        self.reason = message
        where = f"record at offset {offset}: " if offset is not None else ""
        super().__init__(where + message)


class CorruptRecordError(CodecError):
    """The bytes are not a well-formed evoq record (truncated, garbled, too large, wrong types)."""


class UnknownEventError(CodecError):
    """The record names an event type this evoq does not know."""


class UnsupportedVersionError(CodecError):
    """The record's schema version is newer than this evoq, or has no upcaster."""


class Undecodable:
    """Stands in for a record whose bytes could not even be unpacked; :func:`check_record`
    rejects it with ``reason``."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


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
    ExperimentExtended: (_INT, _STR, _NUM),
    TrialProgressed: (_INT, _INT, _INT, _NUM, _NUM),
}
# enum fields: (type, field index) -> version -> allowed values
_ENUMS: dict[tuple[type[Any], int], dict[int, tuple[str, ...]]] = {
    (TrialSubmitted, 4): _PHASES,
    (TrialFailed, 2): _KINDS_BY_VERSION,
    (ExperimentFinished, 0): {1: FINISH_STATUSES, 2: FINISH_STATUSES},
}

_packer = msgpack.Packer(use_bin_type=True, use_single_float=False, strict_types=False)


def encode(event: Event, *, version: int = SCHEMA_VERSION) -> bytes:
    """Encode one event as a msgpack record (of an older schema ``version`` if asked).

    Raises:
        CodecError: not an evoq event, not encodable, over the size limit, or without a form
            in ``version``.
    """
    cls = type(event)
    if cls not in TAGS:
        raise CodecError(f"cannot encode {cls.__name__}: not an evoq event")
    record = to_record(event) if version == SCHEMA_VERSION else downcast(event, version)
    if record is None:
        raise CodecError(f"{cls.__name__} has no form in schema version {version}")
    try:
        data: bytes = _packer.pack(record)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {cls.__name__}: {exc}") from None
    if len(data) > MAX_RECORD_BYTES:
        raise CodecError(f"{cls.__name__} encodes to {len(data)} bytes, over the {MAX_RECORD_BYTES} limit")
    return data


def downcast(event: Event, version: int) -> tuple[Any, ...] | None:
    """The record of ``event`` in an older schema ``version``, or None when it has none there.

    Version 1 has no ``trial_progressed``, ``experiment_extended``, phase ``reeval`` or kind
    ``refused``; a refused run is written as ``lost`` (both are re-run as a new attempt) with the
    worker's reason in its message.
    """
    if version == SCHEMA_VERSION:
        return to_record(event)
    if version != 1:
        return None
    tag = TAGS[type(event)]
    if tag not in _V1_TAGS:
        return None
    if isinstance(event, TrialSubmitted) and event.phase not in _PHASES[1]:
        return None
    if isinstance(event, TrialFailed) and event.kind == "refused":
        event = dataclasses.replace(event, kind="lost", message=f"refused: {event.message}")
    return (tag, 1, *[getattr(event, f) for f in _FIELDS[type(event)]])


def unpack(data: bytes, *, offset: int | str | None = None) -> Any:
    """msgpack-decode one record with evoq's options (no type checks): the raw tuple.

    Raises:
        CorruptRecordError: not msgpack, or over the size limit.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise CorruptRecordError(
            f"record of {len(data)} bytes is over the {MAX_RECORD_BYTES}-byte limit", offset=offset
        )
    try:
        return msgpack.unpackb(data, **MSGPACK_UNPACK)
    except Exception as exc:  # msgpack raises ValueError, TypeError and its own exceptions
        raise CorruptRecordError(
            f"not a msgpack record ({type(exc).__name__}: {exc})", offset=offset
        ) from None


def unpack_lenient(data: bytes) -> Any:
    """Like :func:`unpack`, but a record that cannot be unpacked comes back as an
    :class:`Undecodable` (for folds that reject records instead of stopping)."""
    try:
        return unpack(data)
    except CorruptRecordError as exc:
        return Undecodable(exc.reason)


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
    """Validate an unpacked record and return it as ``(tag, version, *fields)`` with the fields
    of the current schema.

    Old versions are upcast; integers in float fields become floats. This is the gate every
    record passes before the reducer sees it; a well-formed record costs a few type tests.

    Raises:
        CorruptRecordError, UnknownEventError, UnsupportedVersionError: as for :func:`decode`.
    """
    if type(obj) is tuple and len(obj) >= 2:
        fast = _FAST_CHECKS.get(obj[0]) if type(obj[0]) is str else None
        if fast is not None and fast(obj):
            if obj[0] in _NESTED_FIELDS:
                check_shape(obj, offset)
            return obj
    rec = _slow_check(obj, offset)
    if rec[0] in _NESTED_FIELDS:
        check_shape(rec, offset)
    return rec


MAX_DEPTH = 64
"""How deep the maps and arrays of a record (a space, a strategy, a config) may nest (a nested
choice takes about four levels per level of nesting)."""
MAX_ITEMS = 100_000
"""How many maps and arrays one record may hold in all: a 1 MiB record of a million empty maps
would take seventy times its size in memory (scalars are not counted: a choice of 100,000
values is a legitimate space)."""
_NESTED_FIELDS = {"experiment_created": (3, 4), "trial_submitted": (4,)}


def check_shape(rec: tuple[Any, ...], offset: int | str | None = None) -> None:
    """Raise CorruptRecordError when the record's nested fields are deeper than
    :data:`MAX_DEPTH` or hold more than :data:`MAX_ITEMS` maps and arrays (walked without
    recursion: readers that recurse, such as the space parser, never see such a record)."""
    stack: list[tuple[Any, int]] = []
    for i in _NESTED_FIELDS[rec[0]]:
        value = rec[i]
        if type(value) is dict and len(value) <= 1000:
            for v in value.values():
                if type(v) is dict or type(v) is list or type(v) is tuple:
                    stack.append((value, 1))  # nested: walk the whole field
                    break
            continue  # a flat map of scalars, the common config: nothing deeper to count
        stack.append((value, 1))
    items = 0
    while stack:
        value, depth = stack.pop()
        if type(value) is dict:
            children: Any = [*value.keys(), *value.values()]
        elif type(value) is list or type(value) is tuple:
            children = value
        else:
            continue
        if depth > MAX_DEPTH:
            raise CorruptRecordError(f"{rec[0]}: values nested deeper than {MAX_DEPTH}", offset=offset)
        nested = [child for child in children if type(child) in (dict, list, tuple)]
        items += len(nested)
        if items > MAX_ITEMS:
            raise CorruptRecordError(f"{rec[0]}: more than {MAX_ITEMS} maps and arrays", offset=offset)
        stack.extend((child, depth + 1) for child in nested)


def _slow_check(obj: Any, offset: int | str | None) -> tuple[Any, ...]:
    if isinstance(obj, Undecodable):
        raise CorruptRecordError(obj.reason, offset=offset)
    if type(obj) is not tuple or len(obj) < 2:
        raise CorruptRecordError("a record must be an array [type, version, fields...]", offset=offset)
    tag, version = obj[0], obj[1]
    if tag == UNREADABLE_TAG:
        reason = obj[3] if len(obj) > 3 and isinstance(obj[3], str) else "?"
        entry = obj[2] if len(obj) > 2 else "?"
        raise CorruptRecordError(f"stream entry {entry}: {reason[:300]}", offset=offset)
    cls = _BY_TAG.get(tag) if type(tag) is str else None
    if cls is None:
        raise UnknownEventError(f"unknown event type {_short(tag)}", offset=offset)
    if type(version) is not int or version < 1:
        raise CorruptRecordError(
            f"{tag}: schema version must be a positive integer, got {_short(version)}", offset=offset
        )
    if version > SCHEMA_VERSION:
        raise UnsupportedVersionError(
            f"{tag} has schema version {version}, newer than this evoq's {SCHEMA_VERSION}: "
            "upgrade evoq to read this log",
            offset=offset,
        )
    if version < INTRODUCED[tag]:
        raise CorruptRecordError(f"{tag} does not exist in schema version {version}", offset=offset)
    fields: list[Any] = list(obj[2:])
    kinds = _KINDS[cls]
    if len(fields) != len(kinds):
        raise CorruptRecordError(
            f"{tag} v{version} has {len(kinds)} fields, record has {len(fields)}", offset=offset
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
        allowed = _ENUMS.get((cls, i), {}).get(version)
        if allowed is not None and value not in allowed:
            raise CorruptRecordError(
                f"{tag}.{_FIELDS[cls][i]} must be one of {allowed} in v{version}, got {_short(value)}",
                offset=offset,
            )
    fields = _upcast(tag, version, fields, offset)
    return (tag, SCHEMA_VERSION, *fields)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# The fast checks: one per event type, written out (no code generation), each a chain of exact
# type tests in field order plus the enum tests. A record that passes is well formed at the
# current schema version (the six types of version 1 have the same fields in version 2, so a v1
# record passes too when its enum values are v1's). Anything else goes through _slow_check,
# which converts ints in float fields, upcasts old versions and names the problem.
# tests/unit/test_codec.py checks that each agrees with the slow check.
_V = SCHEMA_VERSION
_PH2, _PH1 = frozenset(_PHASES[2]), frozenset(_PHASES[1])
_KI2, _KI1 = frozenset(_KINDS_BY_VERSION[2]), frozenset(_KINDS_BY_VERSION[1])
_STATUSES = frozenset(FINISH_STATUSES)


def _fast_created(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 9 and (r[1] == 2 or r[1] == 1) and type(r[1]) is int and type(r[2]) is str
        and type(r[3]) is dict and type(r[4]) is dict and type(r[5]) is int and type(r[6]) is str
        and type(r[7]) is str and type(r[8]) is float
    )  # fmt: skip


def _fast_submitted(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 9 and type(r[1]) is int and type(r[2]) is int and type(r[3]) is int
        and type(r[4]) is dict and (r[5] is None or type(r[5]) is int) and type(r[6]) is str
        and type(r[7]) is str and type(r[8]) is float
        and ((r[1] == 2 and r[6] in _PH2) or (r[1] == 1 and r[6] in _PH1))
    )  # fmt: skip


def _fast_started(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 6 and (r[1] == 2 or r[1] == 1) and type(r[1]) is int and type(r[2]) is int
        and type(r[3]) is int and type(r[4]) is str and type(r[5]) is float
    )  # fmt: skip


def _fast_completed(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 8 and (r[1] == 2 or r[1] == 1) and type(r[1]) is int and type(r[2]) is int
        and type(r[3]) is int and type(r[4]) is float and type(r[5]) is float and type(r[6]) is str
        and type(r[7]) is float
    )  # fmt: skip


def _fast_failed(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 8 and type(r[1]) is int and type(r[2]) is int and type(r[3]) is int
        and type(r[4]) is str and type(r[5]) is str and type(r[6]) is str and type(r[7]) is float
        and ((r[1] == 2 and r[4] in _KI2) or (r[1] == 1 and r[4] in _KI1))
    )  # fmt: skip


def _fast_finished(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 5 and (r[1] == 2 or r[1] == 1) and type(r[1]) is int and type(r[2]) is str
        and r[2] in _STATUSES and type(r[3]) is str and type(r[4]) is float
    )  # fmt: skip


def _fast_extended(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 5 and r[1] == _V and type(r[1]) is int and type(r[2]) is int and type(r[3]) is str
        and type(r[4]) is float
    )  # fmt: skip


def _fast_progressed(r: tuple[Any, ...]) -> bool:
    return (
        len(r) == 7 and r[1] == _V and type(r[1]) is int and type(r[2]) is int and type(r[3]) is int
        and type(r[4]) is int and type(r[5]) is float and type(r[6]) is float
    )  # fmt: skip


_FAST_CHECKS: dict[str, Callable[[tuple[Any, ...]], bool]] = {
    TAGS[ExperimentCreated]: _fast_created,
    TAGS[TrialSubmitted]: _fast_submitted,
    TAGS[TrialStarted]: _fast_started,
    TAGS[TrialCompleted]: _fast_completed,
    TAGS[TrialFailed]: _fast_failed,
    TAGS[ExperimentFinished]: _fast_finished,
    TAGS[ExperimentExtended]: _fast_extended,
    TAGS[TrialProgressed]: _fast_progressed,
}


def _upcast(tag: str, version: int, fields: list[Any], offset: int | str | None) -> list[Any]:
    while version < SCHEMA_VERSION:
        step = UPCASTERS.get((tag, version))
        if step is None:
            raise UnsupportedVersionError(f"no upcaster for {tag} v{version}", offset=offset)
        fields = step(fields)
        version += 1
    return fields
