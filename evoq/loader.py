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
nothing. Command trials (a later kind of trial) are allowlisted separately, by their exact argv.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import EvoqError

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


@dataclass(frozen=True)
class Allowlist:
    """The trial functions a worker may run (``error``: why its configuration is unusable; such
    an allowlist admits nothing)."""

    patterns: tuple[Pattern, ...]
    error: str | None = None

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """An allowlist from pattern strings (empty entries are skipped)."""
        return cls(tuple(Pattern.parse(e) for e in entries if e.strip()))

    def refusal(self, path: Any) -> str | None:
        """Why ``path`` may not run here, or None when it may."""
        try:
            module, function = split_path(path)
        except TrialLoadError as exc:
            return str(exc)
        if self.error is not None:
            return f"this worker's allowlist is unusable: {self.error}"
        if any(p.admits(module, function) for p in self.patterns):
            return None
        shown = ", ".join(p.text for p in self.patterns) or "nothing"
        return f"trial {path!r} is not in this worker's allowlist ({shown})"

    def __str__(self) -> str:
        return ",".join(p.text for p in self.patterns)


def load_trial(path: str, allow: Allowlist | None = None) -> Callable[[dict[str, Any]], Any]:
    """Import ``module:function`` and return the function.

    With ``allow``, the path is checked against it first, and nothing is imported when it is
    refused.

    Raises:
        TrialRefusedError: ``allow`` does not admit the path.
        TrialLoadError: malformed path, a module that does not import, or an object that is not
            a function defined in that module.
    """
    module_name, function = split_path(path)
    if allow is not None:
        why = allow.refusal(path)
        if why is not None:
            raise TrialRefusedError(why)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing user code: ImportError, SyntaxError, ...
        raise TrialLoadError(
            f"trial {path!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    if getattr(module, "__name__", None) != module_name or sys.modules.get(module_name) is not module:
        raise TrialLoadError(f"trial {path!r}: module {module_name!r} is not what it says it is")
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


def parse_allow(raw: str | Sequence[str]) -> Allowlist:
    """An allowlist from a comma-separated string (``EVOQ_ALLOW``) or a list of patterns."""
    entries = raw.split(",") if isinstance(raw, str) else list(raw)
    return Allowlist.parse(entries)
