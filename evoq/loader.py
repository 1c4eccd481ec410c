"""Trial paths, the workers' allowlist, and loading a trial function.

A trial path is ``module:function``:

* ``module`` is a dotted module name; each segment is a Python identifier and none is a dunder
  name (``pkg.__init__`` and the like are refused);
* ``function`` is one identifier that does not start with ``_`` (no dots: nothing is looked up
  through what the module imported);
* the object found must be a plain Python function *defined in that module*
  (``fn.__module__ == module``). ``logging.config.dictConfig`` imported by an allowed module, a
  class, a builtin or a ``functools.partial`` is refused.

An allowlist is a list of patterns, each ``MODULE[:FUNCTION]``. ``MODULE`` is matched segment by
segment: a segment is an identifier (itself) or ``*`` (any one segment); a last segment ``**``
matches one or more further segments. ``FUNCTION`` is an identifier or ``*`` (any function the
module defines); a pattern without ``:FUNCTION`` means ``:*``. So ``mypkg.train:train`` admits one
function, ``mypkg.train`` every function of one module, ``mypkg.*`` the modules directly in
``mypkg``, ``mypkg.**`` everything under it. No pattern reaches into arguments or attributes.
A path is checked against the allowlist *before* anything is imported; a refused path imports
nothing. Command trials (:mod:`evoq.trialspec`) are allowlisted separately, by their exact argv
template, folder and argument mode (:func:`parse_command`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import EvoqError
from .trialspec import CommandTrial, TrialSpecError, describe, parse_trial

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_PATH = 300


class TrialLoadError(EvoqError, ValueError):
    """The trial path is malformed, does not import, or names something that is not a trial."""


class TrialRefusedError(TrialLoadError):
    """The worker's allowlist does not admit the trial path (nothing was imported)."""


def _dunder(segment: str) -> bool:
    return segment.startswith("__") and segment.endswith("__")


def split_path(path: Any) -> tuple[str, str]:
    """``(module, function)`` of a well-formed trial path.

    Raises:
        TrialLoadError: the path is not ``module:function`` as the module docstring defines.
    """
    if not isinstance(path, str) or len(path) > MAX_PATH or path.count(":") != 1:
        raise TrialLoadError(f"trial {_show(path)} must have the form 'package.module:function'")
    module, function = path.split(":")
    segments = module.split(".")
    if not all(_IDENT.match(s) for s in segments) or not _IDENT.match(function):
        raise TrialLoadError(f"trial {_show(path)} must have the form 'package.module:function'")
    bad = [s for s in segments if _dunder(s)]
    if bad:
        raise TrialLoadError(f"trial {_show(path)}: module names may not contain dunder segments ({bad[0]})")
    if function.startswith("_"):
        raise TrialLoadError(f"trial {_show(path)}: the function must be a public name (no leading '_')")
    return module, function


def check_path(path: Any) -> str:
    """Return ``path`` if it is a well-formed trial path (see :func:`split_path`)."""
    split_path(path)
    return str(path)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Pattern:
    """One allowlist entry (see the module docstring)."""

    text: str
    module: tuple[str, ...]
    function: str

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """Parse ``MODULE[:FUNCTION]``.

        Raises:
            TrialLoadError: the pattern is malformed (it names what is wrong).
        """
        raw = text.strip()
        module, _, function = raw.partition(":")
        function = function or "*"
        segments = tuple(module.split("."))
        for i, s in enumerate(segments):
            last = i == len(segments) - 1
            if not (_IDENT.match(s) and not _dunder(s)) and s != "*" and not (s == "**" and last and i > 0):
                raise TrialLoadError(
                    f"allowlist pattern {raw!r}: module segment {s!r} must be an identifier, '*', "
                    "or a final '**'"
                )
        if function != "*" and not (_IDENT.match(function) and not function.startswith("_")):
            raise TrialLoadError(f"allowlist pattern {raw!r}: function must be a public identifier or '*'")
        return cls(raw, segments, function)

    def admits(self, module: str, function: str) -> bool:
        """Whether this pattern admits ``module:function`` (both already well formed)."""
        if self.function not in ("*", function):
            return False
        segments = module.split(".")
        pattern = self.module
        if pattern[-1] == "**":
            head = pattern[:-1]
            return len(segments) > len(head) and all(
                p in ("*", s) for p, s in zip(head, segments, strict=False)
            )
        return len(segments) == len(pattern) and all(
            p in ("*", s) for p, s in zip(pattern, segments, strict=True)
        )


def parse_command(text: str) -> CommandTrial:
    """An allowed command: a shell-style line (``python train.py --epochs 5``, run in the trial
    directory itself, nothing appended) or the spec's table as JSON
    (``{"command": [...], "cwd": "mnist", "args": "flags"}``).

    Raises:
        TrialLoadError: neither parses into a command.
    """
    text = text.strip()
    try:
        if text.startswith("{"):
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TrialSpecError("not a JSON object")
            return CommandTrial.from_mapping(raw)
        return CommandTrial(tuple(shlex.split(text)))
    except (TrialSpecError, ValueError) as exc:
        raise TrialLoadError(f"allowed command {text[:80]!r}: {exc}") from None


@dataclass(frozen=True)
class Allowlist:
    """The trials a worker may run: function patterns and exact commands (``error``: why its
    configuration is unusable; such an allowlist admits nothing).

    A command trial is admitted only when its argv template, ``cwd`` and ``args`` are *exactly*
    those of an allowed command: nothing is globbed, no argument may be added, changed or dropped
    (placeholders are part of the template and compared as written).
    """

    patterns: tuple[Pattern, ...]
    error: str | None = None
    commands: tuple[CommandTrial, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str], commands: Iterable[str] = ()) -> Allowlist:
        """An allowlist from pattern strings and allowed commands (empty entries are skipped)."""
        return cls(
            tuple(Pattern.parse(e) for e in entries if e.strip()),
            commands=tuple(parse_command(c) for c in commands if c.strip()),
        )

    def refusal(self, trial: Any) -> str | None:
        """Why ``trial`` (a function path or a command trial string) may not run here, or None."""
        try:
            parsed = parse_trial(trial)
        except TrialSpecError as exc:
            return str(exc)
        if self.error is not None:
            return f"this worker's allowlist is unusable: {self.error}"
        if isinstance(parsed, CommandTrial):
            if parsed in self.commands:
                return None
            allowed = "; ".join(describe(c.canonical()) for c in self.commands) or "none"
            return f"command {describe(trial)!r} is not one this worker may run (allowed commands: {allowed})"
        try:
            module, function = split_path(parsed)
        except TrialLoadError as exc:
            return str(exc)
        if any(p.admits(module, function) for p in self.patterns):
            return None
        shown = ", ".join(p.text for p in self.patterns) or "nothing"
        return f"trial {trial!r} is not in this worker's allowlist ({shown})"

    def __str__(self) -> str:
        parts = [p.text for p in self.patterns] + [
            f"command {describe(c.canonical())!r}" for c in self.commands
        ]
        return ",".join(parts)


def _import(path: str) -> tuple[Any, str, str]:
    module_name, name = split_path(path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing user code: ImportError, SyntaxError, ...
        raise TrialLoadError(
            f"trial {path!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    if getattr(module, "__name__", None) != module_name or sys.modules.get(module_name) is not module:
        raise TrialLoadError(f"trial {path!r}: module {module_name!r} is not what it says it is")
    return module, module_name, name


def load_object(path: str) -> Any:
    """Import ``module:name`` and return that name of the module's own namespace, whatever it is
    (a benchmark table object for ``evoq run --simulate``; not for workers: use
    :func:`load_trial`). Same path rules as trials; no attribute is looked up through another.

    Raises:
        TrialLoadError: malformed path, a module that does not import, or no such name.
    """
    module, module_name, name = _import(path)
    obj = vars(module).get(name)
    if obj is None:
        raise TrialLoadError(f"trial {path!r}: module {module_name!r} defines no {name!r}")
    return obj


def load_trial(path: str, allow: Allowlist | None = None) -> Callable[[dict[str, Any]], Any]:
    """Import ``module:function`` and return the function.

    With ``allow``, the path is checked against it first, and nothing is imported when it is
    refused.

    Raises:
        TrialRefusedError: ``allow`` does not admit the path.
        TrialLoadError: malformed path, a module that does not import, or an object that is not
            a function defined in that module.
    """
    split_path(path)
    if allow is not None:
        why = allow.refusal(path)
        if why is not None:
            raise TrialRefusedError(why)
    module, module_name, function = _import(path)
    obj = vars(module).get(function)  # the module's own namespace: no __getattr__, no attribute paths
    if obj is None:
        raise TrialLoadError(f"trial {path!r}: module {module_name!r} defines no {function!r}")
    if not inspect.isfunction(obj):
        raise TrialLoadError(
            f"trial {path!r}: {function!r} is a {type(obj).__name__}, not a function defined in {module_name!r}"
        )
    if obj.__module__ != module_name:
        raise TrialLoadError(
            f"trial {path!r}: {function!r} is defined in {obj.__module__!r}, not in {module_name!r} "
            "(only functions a module defines itself can be trials)"
        )
    fn: Callable[[dict[str, Any]], Any] = obj
    return fn


def parse_allow(raw: str | Sequence[str], commands: Sequence[str] = ()) -> Allowlist:
    """An allowlist from a comma-separated string (``EVOQ_ALLOW``) or a list of patterns, and
    allowed commands (see :func:`parse_command`)."""
    entries = raw.split(",") if isinstance(raw, str) else list(raw)
    return Allowlist.parse(entries, commands)
