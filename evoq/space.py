"""Search spaces: plain ``{name: [choice, ...]}`` mappings and NNI's ``search_space.json``.

A :class:`SearchSpace` is an ordered, immutable list of parameters. Each parameter knows how to
draw a value from a :class:`random.Random` it is given (never from global random state) and how
to draw a *different* value (used to make sure a mutated child differs from its parent).

NNI semantics are followed for every supported ``_type``:

* ``choice``: one of ``_value`` (a non-empty list);
* ``randint``: an integer in ``[low, high)`` (upper bound exclusive, as in NNI 2.x);
* ``uniform``: a float in ``[low, high]``;
* ``quniform``: ``clip(round(uniform(low, high) / q) * q, low, high)``;
* ``loguniform``: ``exp(uniform(log(low), log(high)))``;
* ``qloguniform``: ``clip(round(loguniform(low, high) / q) * q, low, high)``.

Anything else (``normal``, ``lognormal``, nested choices with sub-spaces, ...) is rejected with
a :class:`SpaceError` naming the parameter and the problem.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .errors import EvoqError

Value: TypeAlias = Any
"""A parameter value: None, bool, int, float, str, or a tuple of those (msgpack-carriable)."""

Config: TypeAlias = dict[str, Any]
ConfigKey: TypeAlias = tuple[Any, ...]

SUPPORTED_TYPES = ("choice", "randint", "uniform", "quniform", "loguniform", "qloguniform")
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_DIFFERENT_TRIES = 64


class SpaceError(EvoqError, ValueError):
    """A search space (or a config checked against it) is invalid; the message names the parameter."""


def _carriable(value: Any, *, where: str) -> Any:
    """Return ``value`` normalised for msgpack (lists become tuples) or raise SpaceError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _UINT64_MAX:
            raise SpaceError(f"{where}: integer {value} does not fit in 64 bits (msgpack cannot carry it)")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_carriable(v, where=where) for v in value)
    if isinstance(value, Mapping):
        raise SpaceError(f"{where}: nested choices with sub-spaces (a mapping as a choice) are not supported")
    raise SpaceError(f"{where}: value {value!r} of type {type(value).__name__} cannot be carried by msgpack")


def _number(value: Any, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise SpaceError(f"{where}: bound must be finite, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed list of values (NNI ``choice``)."""

    name: str
    values: tuple[Value, ...]

    def sample(self, rng: random.Random) -> Value:
        """Draw a value uniformly from the choices."""
        return rng.choice(self.values)

    def different(self, rng: random.Random, current: Value) -> Value | None:
        """Draw uniformly among the choices that differ from ``current``; None if there are none."""
        others = [v for v in self.values if v != current]
        return rng.choice(others) if others else None

    def can_vary(self) -> bool:
        """Whether this parameter has at least two distinct values."""
        return any(v != self.values[0] for v in self.values)

    def spec(self) -> dict[str, Any]:
        """NNI ``search_space.json`` form."""
        return {"_type": "choice", "_value": [_listify(v) for v in self.values]}

    def contains(self, value: Value) -> bool:
        """Whether ``value`` is one of the choices."""
        return value in self.values


@dataclass(frozen=True, slots=True)
class RandInt:
    """An integer in ``[low, high)`` (NNI ``randint``; the upper bound is exclusive)."""

    name: str
    low: int
    high: int

    def sample(self, rng: random.Random) -> Value:
        """Draw an integer uniformly from ``[low, high)``."""
        return rng.randrange(self.low, self.high)

    def different(self, rng: random.Random, current: Value) -> Value | None:
        """Draw an integer of ``[low, high)`` other than ``current``; None if there is none."""
        if self.high - self.low < 2:
            return None
        if not (isinstance(current, int) and self.low <= current < self.high):
            return self.sample(rng)
        v = rng.randrange(self.low, self.high - 1)
        return v + 1 if v >= current else v

    def can_vary(self) -> bool:
        """Whether the range holds at least two integers."""
        return self.high - self.low >= 2

    def spec(self) -> dict[str, Any]:
        """NNI ``search_space.json`` form."""
        return {"_type": "randint", "_value": [self.low, self.high]}

    def contains(self, value: Value) -> bool:
        """Whether ``value`` is an integer of the range."""
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value < self.high


@dataclass(frozen=True, slots=True)
class Uniform:
    """A real number: NNI ``uniform``, ``quniform``, ``loguniform`` or ``qloguniform``."""

    name: str
    low: float
    high: float
    q: float | None = None
    log: bool = False

    @property
    def type(self) -> str:
        """The NNI ``_type`` name."""
        return ("q" if self.q is not None else "") + ("loguniform" if self.log else "uniform")

    def sample(self, rng: random.Random) -> Value:
        """Draw a value with NNI's semantics for this type."""
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        if self.q is not None:
            x = round(x / self.q) * self.q
        return float(min(max(x, self.low), self.high))

    def different(self, rng: random.Random, current: Value) -> Value | None:
        """Draw until the value differs from ``current`` (bounded); None if none was found."""
        for _ in range(_DIFFERENT_TRIES):
            v = self.sample(rng)
            if v != current:
                return v
        return None

    def can_vary(self) -> bool:
        """Always true: ``low < high`` is enforced."""
        return True

    def spec(self) -> dict[str, Any]:
        """NNI ``search_space.json`` form."""
        value: list[float] = [self.low, self.high] + ([self.q] if self.q is not None else [])
        return {"_type": self.type, "_value": value}

    def contains(self, value: Value) -> bool:
        """Whether ``value`` is a number within the bounds."""
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high
        )


Param: TypeAlias = Choice | RandInt | Uniform


def _listify(value: Value) -> Any:
    return [_listify(v) for v in value] if isinstance(value, tuple) else value


def _parse_param(name: Any, raw: Any) -> Param:
    if not isinstance(name, str) or not name:
        raise SpaceError(f"parameter names must be non-empty strings, got {name!r}")
    where = f"parameter {name!r}"
    if isinstance(raw, (list, tuple)):
        raw = {"_type": "choice", "_value": list(raw)}
    if not isinstance(raw, Mapping):
        raise SpaceError(
            f"{where}: expected a list of choices or an NNI spec with _type and _value, got {raw!r}"
        )
    extra = set(raw) - {"_type", "_value"}
    if extra:
        raise SpaceError(f"{where}: unknown key(s) {sorted(map(str, extra))} (only _type and _value)")
    if "_type" not in raw:
        raise SpaceError(f"{where}: missing _type")
    kind = raw["_type"]
    if kind not in SUPPORTED_TYPES:
        raise SpaceError(
            f"{where}: _type {kind!r} is not supported (supported: {', '.join(SUPPORTED_TYPES)})"
        )
    if "_value" not in raw:
        raise SpaceError(f"{where}: missing _value")
    value = raw["_value"]
    if not isinstance(value, (list, tuple)):
        raise SpaceError(f"{where}: _value must be a list, got {type(value).__name__}")
    if kind == "choice":
        if not value:
            raise SpaceError(f"{where}: empty choice list")
        return Choice(name, tuple(_carriable(v, where=where) for v in value))
    if kind == "randint":
        if len(value) != 2:
            raise SpaceError(f"{where}: randint needs _value [low, high], got {list(value)!r}")
        lo, hi = (_number(v, where=where) for v in value)
        if lo != int(lo) or hi != int(hi):
            raise SpaceError(f"{where}: randint bounds must be integers, got {list(value)!r}")
        if lo >= hi:
            raise SpaceError(f"{where}: low >= high ({lo} >= {hi}); randint's upper bound is exclusive")
        return RandInt(name, int(lo), int(hi))
    quantized = kind.startswith("q")
    need = 3 if quantized else 2
    if len(value) != need:
        form = "[low, high, q]" if quantized else "[low, high]"
        raise SpaceError(f"{where}: {kind} needs _value {form}, got {list(value)!r}")
    lo, hi = float(_number(value[0], where=where)), float(_number(value[1], where=where))
    if lo >= hi:
        raise SpaceError(f"{where}: low >= high ({lo} >= {hi})")
    log = kind.endswith("loguniform")
    if log and lo <= 0:
        raise SpaceError(f"{where}: {kind} needs a positive low bound, got {lo}")
    q: float | None = None
    if quantized:
        q = float(_number(value[2], where=where))
        if q <= 0:
            raise SpaceError(f"{where}: q must be positive, got {q}")
    return Uniform(name, lo, hi, q, log)


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """An ordered, immutable search space."""

    params: tuple[Param, ...]
    _getter: Any = field(init=False, repr=False, compare=False)
    _tests: Any = field(init=False, repr=False, compare=False)
    variable: tuple[Param, ...] = field(init=False, repr=False, compare=False)
    """The parameters with at least two distinct values (those a mutation can change)."""

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.params)
        getter = operator.itemgetter(*names) if len(names) > 1 else (lambda c: (c[names[0]],))
        object.__setattr__(self, "_getter", getter)
        object.__setattr__(self, "variable", tuple(p for p in self.params if p.can_vary()))
        tests = tuple(
            frozenset(p.values).__contains__ if isinstance(p, Choice) else p.contains for p in self.params
        )
        object.__setattr__(self, "_tests", tests)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | SearchSpace) -> SearchSpace:
        """Build a space from ``{name: [choices]}`` and/or NNI ``{name: {_type, _value}}`` entries.

        Raises:
            SpaceError: the message names the parameter and what is wrong with it.
        """
        if isinstance(raw, SearchSpace):
            return raw
        if not isinstance(raw, Mapping):
            raise SpaceError(f"a search space must be a mapping of parameter names, got {type(raw).__name__}")
        if not raw:
            raise SpaceError("the search space has no parameters")
        return cls(tuple(_parse_param(name, spec) for name, spec in raw.items()))

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in order."""
        return tuple(p.name for p in self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def spec(self) -> dict[str, dict[str, Any]]:
        """The NNI ``search_space.json`` form (parses back to an equal space)."""
        return {p.name: p.spec() for p in self.params}

    def sample(self, rng: random.Random) -> Config:
        """Draw a config, one value per parameter, in order."""
        return {p.name: p.sample(rng) for p in self.params}

    def key(self, config: Mapping[str, Any]) -> ConfigKey:
        """A hashable key identifying ``config`` (values in parameter order)."""
        try:
            key: ConfigKey = self._getter(config)
        except (KeyError, TypeError):
            return tuple(config.get(name) if isinstance(config, Mapping) else None for name in self.names)
        return key

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` has exactly this space's parameters, each with a value inside it."""
        if not isinstance(config, Mapping) or len(config) != len(self.params):
            return False
        try:
            return all(test(value) for test, value in zip(self._tests, self._getter(config), strict=True))
        except (KeyError, TypeError):
            return False

    def check(self, config: Mapping[str, Any]) -> None:
        """Raise SpaceError if ``config`` does not belong to this space."""
        names = self.names
        if list(config) != list(names):
            missing = [n for n in names if n not in config]
            extra = [n for n in config if n not in names]
            raise SpaceError(f"config does not match the space: missing {missing}, unknown {extra}")
        for p in self.params:
            if not p.contains(config[p.name]):
                raise SpaceError(f"parameter {p.name!r}: value {config[p.name]!r} is outside the space")

    def size(self) -> float:
        """Number of distinct configs (``inf`` when a parameter is continuous)."""
        n = 1.0
        for p in self.params:
            if isinstance(p, Choice):
                n *= len(set(p.values))
            elif isinstance(p, RandInt):
                n *= p.high - p.low
            else:
                return math.inf
        return n
