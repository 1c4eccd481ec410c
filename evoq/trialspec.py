"""What a trial is: a function (``module:function``) or a command (a script run as it is).

The experiment's creation record and every job payload carry a trial as one string:

* a function path, ``mypkg.train:train`` (see :mod:`evoq.loader`);
* a command, ``command:`` followed by canonical JSON ``{"args": ..., "command": [...],
  "cwd": ...}`` (sorted keys, no spaces), written from the spec's table form::

      trial = { command = ["python", "train.py", "--epochs", "5"], cwd = "mnist", args = "flags" }

A command is an argv (no shell): a non-empty list of strings. An element may hold placeholders
``{name}`` for the config's values (``{{`` and ``}}`` are literal braces); each is replaced by the
value as text, inside that one element, so a value can never become another argument. ``cwd`` is
a relative folder (no ``..``) inside the worker's trial directory (``EVOQ_TRIAL_DIR``, default the
worker's working directory; the embedded default uses the spec's folder). ``args = "flags"``
appends ``--name value`` for every parameter (``"none"``, the default, appends nothing). The
config always reaches the script as JSON in ``EVOQ_CONFIG`` and in the file ``EVOQ_CONFIG_FILE``.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import EvoqError

COMMAND_PREFIX = "command:"
MAX_TRIAL = 8192
"""The longest trial string (a command with its arguments) a payload may carry."""
MAX_ARG = 4096
ARG_MODES = ("none", "flags")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TrialSpecError(EvoqError, ValueError):
    """A trial (function path or command) is malformed; the message names what is wrong."""


@dataclass(frozen=True)
class CommandTrial:
    """A trial run as a child process: ``command`` in ``cwd``, config as data."""

    command: tuple[str, ...]
    cwd: str = "."
    args: str = "none"

    def __post_init__(self) -> None:
        if not self.command or not all(isinstance(a, str) for a in self.command):
            raise TrialSpecError("a command trial needs 'command': a non-empty list of strings")
        for a in self.command:
            if "\0" in a or len(a) > MAX_ARG:
                raise TrialSpecError(f"command argument {a[:40]!r}... is too long or holds a NUL byte")
            placeholders(a)  # raises on stray braces
        if not self.command[0]:
            raise TrialSpecError("a command trial's program (command[0]) is empty")
        object.__setattr__(self, "cwd", normalize_cwd(self.cwd))
        if self.args not in ARG_MODES:
            raise TrialSpecError(f"command trial 'args' must be one of {ARG_MODES}, got {self.args!r}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> CommandTrial:
        """From the spec's table form ``{command = [...], cwd = "...", args = "..."}``."""
        unknown = sorted(set(raw) - {"command", "cwd", "args"})
        if unknown:
            raise TrialSpecError(f"unknown key(s) {unknown} in a command trial (known: command, cwd, args)")
        command = raw.get("command")
        if not isinstance(command, list | tuple):
            raise TrialSpecError("a command trial needs 'command': a non-empty list of strings")
        cwd = raw.get("cwd", ".")
        if not isinstance(cwd, str):
            raise TrialSpecError("command trial 'cwd' must be a string")
        args = raw.get("args", "none")
        return cls(tuple(command), cwd, args if isinstance(args, str) else repr(args))

    def canonical(self) -> str:
        """The trial string the log and the payloads carry."""
        body = {"args": self.args, "command": list(self.command), "cwd": self.cwd}
        return COMMAND_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"))

    def argv(self, config: Mapping[str, Any]) -> list[str]:
        """The argv to run for ``config``: placeholders filled in, flags appended.

        Raises:
            TrialSpecError: a placeholder names no parameter of the config, or (``flags``) a
                parameter name is not an identifier.
        """
        out = [fill(a, config) for a in self.command]
        if self.args == "flags":
            for name, value in config.items():
                if not _IDENT.match(name):
                    raise TrialSpecError(f"parameter name {name!r} cannot be a --flag")
                out += [f"--{name}", as_text(value)]
        return out


def normalize_cwd(cwd: str) -> str:
    """``cwd`` as a normalized relative POSIX path; absolute paths and ``..`` are refused."""
    if "\0" in cwd or len(cwd) > MAX_ARG:
        raise TrialSpecError("command trial 'cwd' is too long or holds a NUL byte")
    if cwd.startswith("/") or cwd.startswith("~"):
        raise TrialSpecError(
            f"command trial 'cwd' must be relative to the worker's trial directory, got {cwd!r}"
        )
    norm = posixpath.normpath(cwd or ".")
    if norm == ".." or norm.startswith("../"):
        raise TrialSpecError(f"command trial 'cwd' may not leave the trial directory, got {cwd!r}")
    return norm


def placeholders(arg: str) -> list[str]:
    """The parameter names an argv element refers to.

    Raises:
        TrialSpecError: a lone ``{`` or ``}`` (write ``{{``/``}}`` for literal braces).
    """
    names = []
    for m in _PLACEHOLDER.finditer(arg):
        text = m.group(0)
        if m.group(1):
            names.append(m.group(1))
        elif text not in ("{{", "}}"):
            raise TrialSpecError(
                f"command argument {arg!r}: a lone {text!r} (write {text * 2!r} for a brace)"
            )
    return names


def as_text(value: Any) -> str:
    """A config value as one argv element: strings as they are, others as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def fill(arg: str, config: Mapping[str, Any]) -> str:
    """``arg`` with its placeholders replaced by the config's values."""

    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        name = m.group(1)
        if name not in config:
            raise TrialSpecError(f"command argument {arg!r} names {{{name}}}, which the config does not have")
        return as_text(config[name])

    return _PLACEHOLDER.sub(sub, arg)


def parse_trial(text: Any) -> str | CommandTrial:
    """A trial string as a function path (returned as is, not yet checked) or a CommandTrial.

    Raises:
        TrialSpecError: not a string, too long, or a malformed command.
    """
    if not isinstance(text, str) or len(text) > MAX_TRIAL:
        raise TrialSpecError(f"a trial must be a string of at most {MAX_TRIAL} characters")
    if not text.startswith(COMMAND_PREFIX):
        return text
    try:
        raw = json.loads(text[len(COMMAND_PREFIX) :])
    except ValueError:
        raise TrialSpecError("a command trial string must be 'command:' and a JSON object") from None
    if not isinstance(raw, dict):
        raise TrialSpecError("a command trial string must be 'command:' and a JSON object")
    trial = CommandTrial.from_mapping(raw)
    if trial.canonical() != text:
        raise TrialSpecError("a command trial string must be in canonical form (sorted keys, no spaces)")
    return trial


def describe(text: str) -> str:
    """A trial string for people: the function path, or the command line."""
    try:
        trial = parse_trial(text)
    except TrialSpecError:
        return text[:80]
    if isinstance(trial, CommandTrial):
        import shlex

        where = "" if trial.cwd == "." else f" (in {trial.cwd})"
        return shlex.join(trial.command) + where
    return trial
