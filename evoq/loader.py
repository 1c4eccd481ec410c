"""Resolving ``module:function`` paths to trial functions, with an allowlist."""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class TrialLoadError(ValueError):
    """The trial path is malformed, does not import, or is not allowed."""


def check_path(path: str) -> str:
    """Return ``path`` if it has the form ``package.module:function``."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise TrialLoadError(f"trial {path!r} must have the form 'package.module:function'")
    return path


def allowed(path: str, patterns: Iterable[str]) -> bool:
    """Whether ``path`` matches one of the fnmatch ``patterns`` (e.g. ``mypkg.*:train``)."""
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def load_object(path: str) -> Any:
    """Import ``module:attribute`` and return the attribute, whatever it is."""
    module_name, _, attr = check_path(path).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrialLoadError(f"trial {path!r}: cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TrialLoadError(
                f"trial {path!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


def load_trial(path: str) -> Callable[[dict[str, Any]], Any]:
    """Import ``module:function`` and return the function."""
    obj = load_object(path)
    if not callable(obj):
        raise TrialLoadError(f"trial {path!r} is not callable")
    fn: Callable[[dict[str, Any]], Any] = obj
    return fn
