"""Search spaces: plain ``{name: [choice, ...]}`` mappings and NNI's ``search_space.json``.

A :class:`SearchSpace` is an ordered, immutable list of parameters. Each parameter knows how to
draw a value from a :class:`random.Random` it is given (never from global random state), how to
draw a *different* value (used to make sure a mutated child differs from its parent) and, for
ordered parameters, how to move to a *nearby* value (``mutation = "neighbour"`` or ``"local"``).

NNI semantics are followed for every ``_type``:

* ``choice``: one of ``_value`` (a non-empty list). A value may be a plain mapping (passed to
  the trial as it is), and when *every* value is a mapping with a ``_name`` key the choice is
  nested: each value is a sub-space whose parameters exist only when that branch is chosen, and
  the trial gets ``{"_name": <branch>, <sub-parameter>: <value>, ...}``, as NNI hands it;
* ``randint``: an integer in ``[low, high)`` (upper bound exclusive, as in NNI 2.x);
* ``uniform``: a float in ``[low, high]``;
* ``quniform``: ``clip(round(uniform(low, high) / q) * q, low, high)`` (an int when ``q`` and
  both bounds are integers, as for ``qloguniform``);
* ``loguniform``: ``exp(uniform(log(low), log(high)))``;
* ``qloguniform``: ``clip(round(loguniform(low, high) / q) * q, low, high)``;
* ``normal``: ``normal(mu, sigma)``; ``qnormal``: ``round(normal(mu, sigma) / q) * q``;
* ``lognormal``: ``exp(normal(mu, sigma))``; ``qlognormal``: ``round(exp(normal(mu, sigma)) / q) * q``.

Anything else is rejected with a :class:`SpaceError` naming the parameter and the problem.

Dedup and ``child_differs`` work on the *flattened* config: a nested choice is one dimension (its
branch) plus the dimensions of the chosen branch's sub-space (:meth:`SearchSpace.dims`).

Local moves (:meth:`Choice.nearby` etc.): a numeric choice or a randint moves by a Gaussian step
of a fifth of its number of values, rounded, at least one value, reflected at the ends (on a
list of up to six values this is almost always a neighbour); uniform types move by a Gaussian
step of a fifth of the range (in log space for the log types), reflected into the range, then
quantized (at least one ``q`` step); normal types move by ``sigma / 2`` in the underlying normal
space. Unordered parameters (strings, mixed or mapping choices, the branch of a nested choice)
are resampled. Which parameters move locally depends on the strategy's ``mutation``
(:func:`moves_locally`): ``neighbour`` only the *discrete* ordered ones (numeric choices and
randint), ``local`` every ordered one, ``resample`` none.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .errors import EvoqError

Value: TypeAlias = Any
"""A parameter value: None, bool, int, float, str, a tuple of those, or a mapping with string
keys of those (msgpack-carriable)."""

Config: TypeAlias = dict[str, Any]
ConfigKey: TypeAlias = tuple[Any, ...]
Path: TypeAlias = tuple[str, ...]
"""Where a dimension sits in a (nested) config: the parameter names from the top."""

SUPPORTED_TYPES = (
    "choice",
    "randint",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "normal",
    "qnormal",
    "lognormal",
    "qlognormal",
)
NAME_KEY = "_name"
"""The key naming the chosen branch of a nested choice, in the space and in the config."""
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_DIFFERENT_TRIES = 64
_LOCAL_SCALE = 0.2
"""A local move's Gaussian step, as a fraction of the parameter's range (or number of values)."""
_Z_MAX = 13.0
"""No draw of ``random.normalvariate`` lies further than this many sigmas from the mean."""
_EXP_MAX = 709.0


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
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise SpaceError(f"{where}: mapping keys must be strings, got {bad[0]!r}")
        return {k: _carriable(v, where=where) for k, v in value.items()}
    raise SpaceError(f"{where}: value {value!r} of type {type(value).__name__} cannot be carried by msgpack")


def freeze(value: Any) -> Any:
    """A hashable stand-in for a value: mappings become frozensets of their items (order does
    not matter, as for ``==``), tuples and lists tuples of frozen values."""
    if isinstance(value, Mapping):
        return frozenset((k, freeze(v)) for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return tuple(freeze(v) for v in value)
    return value


def _number(value: Any, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise SpaceError(f"{where}: bound must be finite, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reflect(x: float, lo: float, hi: float) -> float:
    """``x`` mirrored at the bounds until it lies in ``[lo, hi]``."""
    width = hi - lo
    if width <= 0:
        return lo
    y = math.fmod(x - lo, 2 * width)
    if y < 0:
        y += 2 * width
    return lo + (2 * width - y if y > width else y)


def _index_step(rng: random.Random, i: int, k: int) -> int:
    """A local move among ``k`` ordered values from index ``i``: a Gaussian step of ``k / 5``
    values, rounded, at least one, reflected at the ends; never ``i`` itself (``k >= 2``)."""
    d = round(rng.normalvariate(0.0, _LOCAL_SCALE * (k - 1)))
    if d == 0:
        d = 1 if rng.random() < 0.5 else -1
    j = i + d
    period = 2 * (k - 1)
    j %= period
    if j > k - 1:
        j = period - j
    if j == i:  # reflected back onto itself: take the neighbour on the side of the step
        j = i + 1 if (d > 0 and i + 1 < k) or i == 0 else i - 1
    return j


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a fixed list of values (NNI ``choice``); numeric choices are ordered."""

    name: str
    values: tuple[Value, ...]
    order: tuple[Value, ...] = field(init=False, repr=False, compare=False)
    """The distinct values in increasing order when every value is a number (else empty)."""
    frozen: frozenset[Any] = field(init=False, repr=False, compare=False)

    discrete = True

    def __post_init__(self) -> None:
        numeric = all(_is_number(v) for v in self.values)
        object.__setattr__(self, "order", tuple(sorted(set(self.values))) if numeric else ())
        object.__setattr__(self, "frozen", frozenset(freeze(v) for v in self.values))

    @property
    def ordered(self) -> bool:
        """Whether the choices are numbers (at least two distinct): local moves apply."""
        return len(self.order) >= 2

    def sample(self, rng: random.Random) -> Value:
        """Draw a value uniformly from the choices."""
        return rng.choice(self.values)

    def different(self, rng: random.Random, current: Value) -> Value | None:
        """Draw uniformly among the choices that differ from ``current``; None if there are none."""
        others = [v for v in self.values if v != current]
        return rng.choice(others) if others else None

    def nearby(self, rng: random.Random, current: Value) -> Value | None:
        """A local move among the sorted numeric values (see the module docstring); unordered
        choices draw a different value."""
        if not self.ordered:
            return self.different(rng, current)
        try:
            i = self.order.index(current)
        except ValueError:
            return self.different(rng, current)
        return self.order[_index_step(rng, i, len(self.order))]

    def can_vary(self) -> bool:
        """Whether this parameter has at least two distinct values."""
        return len(self.frozen) >= 2

    def spec(self) -> dict[str, Any]:
        """NNI ``search_space.json`` form."""
        return {"_type": "choice", "_value": [_listify(v) for v in self.values]}

    def contains(self, value: Value) -> bool:
        """Whether ``value`` is one of the choices."""
        try:
            return freeze(value) in self.frozen
        except TypeError:
            return False

    def key(self, value: Value) -> Any:
        """A hashable key of ``value`` (for dedup)."""
        return freeze(value)


@dataclass(frozen=True, slots=True)
class RandInt:
    """An integer in ``[low, high)`` (NNI ``randint``; the upper bound is exclusive)."""

    name: str
    low: int
    high: int

    ordered = True
    discrete = True

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

    def nearby(self, rng: random.Random, current: Value) -> Value | None:
        """A local move (see the module docstring); None if the range holds one integer."""
        k = self.high - self.low
        if k < 2:
            return None
        if not (isinstance(current, int) and self.low <= current < self.high):
            return self.sample(rng)
        return self.low + _index_step(rng, current - self.low, k)

    def can_vary(self) -> bool:
        """Whether the range holds at least two integers."""
        return self.high - self.low >= 2

    def spec(self) -> dict[str, Any]:
        """NNI ``search_space.json`` form."""
        return {"_type": "randint", "_value": [self.low, self.high]}

    def contains(self, value: Value) -> bool:
        """Whether ``value`` is an integer of the range."""
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value < self.high


def _quantize_step(x: float, current: float, q: float, step: float, lo: float, hi: float) -> float | None:
    """``x`` unless it equals ``current``; then one ``q`` step from ``current`` in the direction
    of ``step`` (or the other way at a bound); None when neither stays within ``[lo, hi]``."""
    if x != current:
        return x
    for direction in (1.0, -1.0) if step >= 0 else (-1.0, 1.0):
        y = round(current / q + direction) * q
        if lo <= y <= hi and y != current:
            return float(y)
    return None


def _redraw(sample: Callable[[random.Random], Value], rng: random.Random, current: Value) -> Value | None:
    """Draw with ``sample`` until the value differs from ``current``, at most
    ``_DIFFERENT_TRIES`` times; None if none did (the continuous types' ``different``)."""
    for _ in range(_DIFFERENT_TRIES):
        v = sample(rng)
        if v != current:
            return v
    return None


@dataclass(frozen=True, slots=True)
class Uniform:
    """A real number: NNI ``uniform``, ``quniform``, ``loguniform`` or ``qloguniform``."""

    name: str
    low: float
    high: float
    q: float | None = None
    log: bool = False

    ordered = True
    discrete = False

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
        return self._finish(x)

    @property
    def integral(self) -> bool:
        """``quniform``/``qloguniform`` with an integer ``q`` and integer bounds: values are ints
        (as NNI users expect of ``[1, 10, 1]``)."""
        q = self.q
        return (
            q is not None
            and float(q).is_integer()
            and float(self.low).is_integer()
            and float(self.high).is_integer()
        )

    def _finish(self, x: float) -> float | int:
        if self.q is not None:
            x = round(x / self.q) * self.q
        x = min(max(x, self.low), self.high)
        return round(x) if self.integral else float(x)

    def different(self, rng: random.Random, current: Value) -> Value | None:
        """Draw until the value differs from ``current`` (bounded); None if none was found."""
        return _redraw(self.sample, rng, current)

    def nearby(self, rng: random.Random, current: Value) -> Value | None:
        """A local move (see the module docstring); None if no other value is reachable."""
        if not self.contains(current):
            return self.different(rng, current)
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        x0 = math.log(current) if self.log else float(current)
        step = rng.normalvariate(0.0, _LOCAL_SCALE * (hi - lo))
        y = _reflect(x0 + step, lo, hi)
        v = self._finish(math.exp(y) if self.log else y)
        if self.q is None:
            return v if v != current else None
        moved = _quantize_step(float(v), float(current), self.q, step, self.low, self.high)
        return round(moved) if moved is not None and self.integral else moved

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


@dataclass(frozen=True, slots=True)
class Normal:
    """A real number: NNI ``normal``, ``qnormal``, ``lognormal`` or ``qlognormal``."""

    name: str
    mu: float
    sigma: float
    q: float | None = None
    log: bool = False

    ordered = True
    discrete = False

    @property
    def type(self) -> str:
        """The NNI ``_type`` name."""
        return ("q" if self.q is not None else "") + ("lognormal" if self.log else "normal")

    def _finish(self, x: float) -> float:
        if self.log:
            x = math.exp(x)
        if self.q is not None:
            x = round(x / self.q) * self.q
        return float(x)

    def sample(self, rng: random.Random) -> Value:
        """Draw a value with NNI's semantics for this type."""
        return self._finish(rng.normalvariate(self.mu, self.sigma))

    def different(self, rng: random.Random, current: Value) -> Value | None:
        """Draw until the value differs from ``current`` (bounded); None if none was found."""
        return _redraw(self.sample, rng, current)

    def nearby(self, rng: random.Random, current: Value) -> Value | None:
        """A local move (see the module docstring); None if no other value was reached."""
        if not self.contains(current):
            return self.different(rng, current)
        if self.log:
            floor = self.q / 4 if self.q is not None else math.exp(self.mu - _Z_MAX * self.sigma)
            x0 = math.log(max(float(current), floor))
        else:
            x0 = float(current)
        step = rng.normalvariate(0.0, self.sigma / 2)
        lim = self.mu + _Z_MAX * self.sigma
        x = min(max(x0 + step, self.mu - _Z_MAX * self.sigma), lim)
        v = self._finish(x)
        if self.q is None:
            return v if v != current else None
        lo = 0.0 if self.log else -math.inf
        return _quantize_step(v, float(current), self.q, step, lo, math.inf)

    def can_vary(self) -> bool:
        """Always true: ``sigma > 0`` is enforced."""
        return True

    def spec(self) -> dict[str, Any]:
        """NNI ``search_space.json`` form."""
        value: list[float] = [self.mu, self.sigma] + ([self.q] if self.q is not None else [])
        return {"_type": self.type, "_value": value}

    def contains(self, value: Value) -> bool:
        """Whether ``value`` is a finite number this type can produce (positive for lognormal,
        non-negative for qlognormal)."""
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.log:
            return bool(value >= 0 if self.q is not None else value > 0)
        return True


@dataclass(frozen=True, slots=True)
class Branch:
    """One branch of a nested choice: its ``_name`` and its sub-space (maybe empty)."""

    name: Value
    space: SearchSpace


@dataclass(frozen=True, slots=True)
class NestedChoice:
    """A choice among sub-spaces (NNI ``choice`` whose values all have a ``_name``).

    The config value is ``{"_name": <branch>, <sub-parameter>: <value>, ...}``.
    """

    name: str
    branches: tuple[Branch, ...]
    _by_name: dict[Any, Branch] = field(init=False, repr=False, compare=False)

    ordered = False
    discrete = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {b.name: b for b in self.branches})

    def branch(self, value: Any) -> Branch | None:
        """The branch a config value is in (None if it is not a value of this choice)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return self._by_name.get(value.get(NAME_KEY))
        except TypeError:
            return None

    @staticmethod
    def sub(value: Mapping[str, Any]) -> dict[str, Any]:
        """The sub-config of a value (everything but ``_name``)."""
        return {k: v for k, v in value.items() if k != NAME_KEY}

    def _value(self, b: Branch, sub: Mapping[str, Any]) -> dict[str, Any]:
        return {NAME_KEY: b.name, **sub}

    def sample(self, rng: random.Random) -> Value:
        """Draw a branch uniformly, then its sub-space."""
        b = rng.choice(self.branches)
        return self._value(b, b.space.sample(rng))

    def different(self, rng: random.Random, current: Value) -> Value | None:
        """Another branch, drawn uniformly, with its sub-space sampled; None with one branch."""
        now = self.branch(current)
        others = [b for b in self.branches if b is not now]
        if not others:
            return None
        b = rng.choice(others)
        return self._value(b, b.space.sample(rng))

    def nearby(self, rng: random.Random, current: Value) -> Value | None:
        """Branches are unordered: the same as :meth:`different`."""
        return self.different(rng, current)

    def mutate(self, rng: random.Random, current: Value, p: float, moves: str) -> Value:
        """The branch is resampled with probability ``p`` (a new branch samples its sub-space);
        the chosen branch's sub-parameters then mutate like top-level ones."""
        if rng.uniform(0, 1) < p:
            b = rng.choice(self.branches)
            if b is not self.branch(current):
                return self._value(b, b.space.sample(rng))
        now = self.branch(current)
        if now is None:
            return self.sample(rng)
        return self._value(now, now.space.mutate(self.sub(current), rng, p, moves))

    def can_vary(self) -> bool:
        """Whether there are two branches, or one whose sub-space can vary."""
        return len(self.branches) >= 2 or any(b.space.variable or b.space.nested for b in self.branches)

    def spec(self) -> dict[str, Any]:
        """NNI ``search_space.json`` form."""
        return {"_type": "choice", "_value": [{NAME_KEY: b.name, **b.space.spec()} for b in self.branches]}

    def contains(self, value: Value) -> bool:
        """Whether ``value`` names a branch and the rest is a config of its sub-space."""
        b = self.branch(value)
        return b is not None and b.space.contains(self.sub(value))

    def key(self, value: Value) -> Any:
        """A hashable key: the branch name and the sub-config's key."""
        b = self.branch(value)
        if b is None:
            return freeze(value)
        return (b.name, b.space.key(self.sub(value)))

    def size(self) -> float:
        """Distinct values: the sum over branches of their sub-space sizes."""
        return math.fsum(b.space.size() for b in self.branches)


Param: TypeAlias = Choice | RandInt | Uniform | Normal | NestedChoice


def _listify(value: Value) -> Any:
    if isinstance(value, tuple):
        return [_listify(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _listify(v) for k, v in value.items()}
    return value


def _parse_nested(name: str, values: list[Any] | tuple[Any, ...], where: str) -> NestedChoice:
    branches = []
    seen: set[Any] = set()
    for i, raw in enumerate(values):
        label = raw[NAME_KEY]
        if label is not None and not isinstance(label, (bool, int, float, str)):
            raise SpaceError(f"{where}: branch {i}: _name must be a string or number, got {label!r}")
        if label in seen:
            raise SpaceError(f"{where}: two branches are named {label!r}")
        seen.add(label)
        sub = {k: v for k, v in raw.items() if k != NAME_KEY}
        try:
            space = SearchSpace.parse(sub, allow_empty=True)
        except SpaceError as exc:
            raise SpaceError(f"{where}: branch {label!r}: {exc}") from None
        branches.append(Branch(label, space))
    return NestedChoice(name, tuple(branches))


def _parse_param(name: Any, raw: Any) -> Param:
    if not isinstance(name, str) or not name:
        raise SpaceError(f"parameter names must be non-empty strings, got {name!r}")
    where = f"parameter {name!r}"
    if name == NAME_KEY:
        raise SpaceError(f"{where}: {NAME_KEY} names a branch of a nested choice, not a parameter")
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
        named = [isinstance(v, Mapping) and NAME_KEY in v for v in value]
        if all(named):
            return _parse_nested(name, value, where)
        if any(named):
            raise SpaceError(
                f"{where}: either every choice is a sub-space with a _name (a nested choice) or none is"
            )
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
    normal = kind.endswith("normal")
    if len(value) != need:
        form = ("[mu, sigma" if normal else "[low, high") + (", q]" if quantized else "]")
        raise SpaceError(f"{where}: {kind} needs _value {form}, got {list(value)!r}")
    a, b = float(_number(value[0], where=where)), float(_number(value[1], where=where))
    q: float | None = None
    if quantized:
        q = float(_number(value[2], where=where))
        if q <= 0:
            raise SpaceError(f"{where}: q must be positive, got {q}")
    log = "log" in kind
    if normal:
        if b <= 0:
            raise SpaceError(f"{where}: sigma must be positive, got {b}")
        if log and a + _Z_MAX * b > _EXP_MAX:
            raise SpaceError(f"{where}: exp(normal({a}, {b})) can overflow a float: lower mu or sigma")
        _check_steps(where, q, math.exp(a + _Z_MAX * b) if log else abs(a) + _Z_MAX * b)
        return Normal(name, a, b, q, log)
    _check_steps(where, q, max(abs(a), abs(b)))
    if a >= b:
        raise SpaceError(f"{where}: low >= high ({a} >= {b})")
    if log and a <= 0:
        raise SpaceError(f"{where}: {kind} needs a positive low bound, got {a}")
    return Uniform(name, a, b, q, log)


def _check_steps(where: str, q: float | None, extent: float) -> None:
    """A ``q`` that counts the values up to ``extent`` in at most 2**53 steps (a float counts no
    further; ``x / q`` would round to nothing meaningful, or overflow)."""
    if q is not None and not extent / q <= 2.0**53:
        raise SpaceError(f"{where}: q = {q} is too small for values up to {extent:g} (at most 2**53 steps)")


_Test: TypeAlias = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """An ordered, immutable search space."""

    params: tuple[Param, ...]
    _getter: Any = field(init=False, repr=False, compare=False)
    _tests: Any = field(init=False, repr=False, compare=False)
    _keys: Any = field(init=False, repr=False, compare=False)
    variable: tuple[Param, ...] = field(init=False, repr=False, compare=False)
    """The top-level parameters with at least two distinct values (those a mutation can change)."""
    nested: bool = field(init=False, repr=False, compare=False)
    """Whether a parameter is a nested choice (then :meth:`dims` depends on the config)."""
    _flat_dims: tuple[tuple[Path, Param], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(p.name for p in self.params)
        getter: Callable[[Any], tuple[Any, ...]]
        if not names:
            getter = lambda c: ()  # noqa: E731
        elif len(names) == 1:
            only = names[0]
            getter = lambda c: (c[only],)  # noqa: E731
        else:
            getter = operator.itemgetter(*names)
        object.__setattr__(self, "_getter", getter)
        object.__setattr__(self, "variable", tuple(p for p in self.params if p.can_vary()))
        object.__setattr__(self, "nested", any(isinstance(p, NestedChoice) for p in self.params))
        object.__setattr__(self, "_flat_dims", tuple(((p.name,), p) for p in self.variable))
        tests = tuple(
            p.frozen.__contains__
            if isinstance(p, Choice) and all(not isinstance(v, Mapping) for v in p.values)
            else p.contains
            for p in self.params
        )
        object.__setattr__(self, "_tests", tests)
        keys = tuple(
            p.key
            if isinstance(p, NestedChoice) or (isinstance(p, Choice) and _has_mapping(p.values))
            else None
            for p in self.params
        )
        object.__setattr__(self, "_keys", keys if any(k is not None for k in keys) else None)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | SearchSpace, *, allow_empty: bool = False) -> SearchSpace:
        """Build a space from ``{name: [choices]}`` and/or NNI ``{name: {_type, _value}}`` entries.

        ``allow_empty`` admits a space without parameters (a branch of a nested choice).

        Raises:
            SpaceError: the message names the parameter and what is wrong with it.
        """
        if isinstance(raw, SearchSpace):
            return raw
        if not isinstance(raw, Mapping):
            raise SpaceError(f"a search space must be a mapping of parameter names, got {type(raw).__name__}")
        if not raw and not allow_empty:
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

    def mutate(self, config: Mapping[str, Any], rng: random.Random, p: float, moves: str) -> Config:
        """Each dimension of ``config`` changed with probability ``p`` (NNI's rule): moved to a
        nearby value when :func:`moves_locally` says so for ``moves`` (the strategy's
        ``mutation``), else resampled. A nested choice mutates its branch, then the chosen
        branch's sub-parameters (:meth:`NestedChoice.mutate`)."""
        child = {}
        for param in self.params:
            v = config[param.name]
            if isinstance(param, NestedChoice):
                child[param.name] = param.mutate(rng, v, p, moves)
            elif rng.uniform(0, 1) < p:
                if moves != "resample" and moves_locally(param, moves):
                    new = param.nearby(rng, v)
                    child[param.name] = v if new is None else new
                else:
                    child[param.name] = param.sample(rng)
            else:
                child[param.name] = v
        return child

    def dims(self, config: Mapping[str, Any]) -> tuple[tuple[Path, Param], ...]:
        """The variable dimensions of the flattened ``config``: ``(path, parameter)`` for every
        top-level parameter that can vary and, under a nested choice, for the branch itself (when
        there are two or more) and the variable dimensions of the chosen branch, recursively."""
        if not self.nested:
            return self._flat_dims
        out: list[tuple[Path, Param]] = []
        for param in self.params:
            if isinstance(param, NestedChoice):
                if len(param.branches) >= 2:
                    out.append(((param.name,), param))
                b = param.branch(config.get(param.name))
                if b is not None:
                    sub = NestedChoice.sub(config[param.name])
                    out.extend(((param.name, *path), q) for path, q in b.space.dims(sub))
            elif param.can_vary():
                out.append(((param.name,), param))
        return tuple(out)

    def key(self, config: Mapping[str, Any]) -> ConfigKey:
        """A hashable key identifying ``config`` (values in parameter order, nested values and
        mappings made hashable by :func:`freeze`)."""
        try:
            key: ConfigKey = self._getter(config)
        except (KeyError, TypeError):
            key = tuple(config.get(name) if isinstance(config, Mapping) else None for name in self.names)
        keys = self._keys
        if keys is None:
            return key
        return tuple(v if k is None else k(v) for k, v in zip(keys, key, strict=True))

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` has exactly this space's parameters, each with a value inside it
        (nested values recursively)."""
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
            value = config[p.name]
            if isinstance(p, NestedChoice):
                b = p.branch(value)
                if b is None:
                    raise SpaceError(f"parameter {p.name!r}: value {value!r} names no branch")
                try:
                    b.space.check(NestedChoice.sub(value))
                except SpaceError as exc:
                    raise SpaceError(f"parameter {p.name!r}, branch {b.name!r}: {exc}") from None
            elif not p.contains(value):
                raise SpaceError(f"parameter {p.name!r}: value {value!r} is outside the space")

    def size(self) -> float:
        """Number of distinct configs (``inf`` when a parameter is continuous)."""
        n = 1.0
        for p in self.params:
            if isinstance(p, Choice):
                n *= len(p.frozen)
            elif isinstance(p, RandInt):
                n *= p.high - p.low
            elif isinstance(p, NestedChoice):
                n *= p.size()
            else:
                return math.inf
        return n


def moves_locally(param: Param, moves: str) -> bool:
    """Whether a mutation of ``param`` moves to a nearby value under the strategy's ``mutation``:
    ``neighbour``: discrete ordered parameters (numeric choices, randint); ``local``: every
    ordered parameter; ``resample``: none."""
    if moves == "local":
        return param.ordered
    if moves == "neighbour":
        return param.ordered and param.discrete
    return False


def _has_mapping(values: tuple[Value, ...]) -> bool:
    return any(isinstance(v, Mapping) for v in values)


def get_path(config: Mapping[str, Any], path: Path) -> Any:
    """The value at ``path`` in a (nested) config."""
    value: Any = config
    for name in path:
        value = value[name]
    return value


def set_path(config: Mapping[str, Any], path: Path, value: Any) -> Config:
    """A copy of ``config`` with the value at ``path`` replaced (the mappings on the way copied)."""
    out = dict(config)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = set_path(config[path[0]], path[1:], value)
    return out
