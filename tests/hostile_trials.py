"""A trial module with dangerous things in its namespace, for the hostile-writer tests.

Only :func:`train` is a trial. Everything else is what an attacker who can write to Redis would
like a worker to call through this module: modules it imported (``os``, ``pickle``,
``logging.config``), a function it imported from elsewhere, a class, a partial, a private
function, and a module-level ``__getattr__`` that hands out anything.
"""

from __future__ import annotations

import functools
import logging.config  # noqa: F401 - reachable as hostile_trials:logging.config.dictConfig before the fix
import os
import pickle  # noqa: F401
from os import system as run_command  # noqa: F401 - a function this module did not define
from pathlib import Path
from typing import Any


def train(config: dict[str, Any]) -> float:
    """The one real trial."""
    return float(config.get("x", 1))


def _private(config: dict[str, Any]) -> float:
    """Not a trial: private."""
    Path(os.environ["EVOQ_TEST_MARKER"]).touch()
    return 0.0


class Trainer:
    """Not a trial: a class (calling it would construct one)."""

    def __init__(self, config: dict[str, Any]) -> None:
        Path(os.environ["EVOQ_TEST_MARKER"]).touch()


touch_marker = functools.partial(lambda config, path: Path(path).touch(), path="/dev/null")
"""Not a trial: a partial."""


def __getattr__(name: str) -> Any:
    """Hands out ``os.system`` for any unknown name (a loader using getattr would take it)."""
    return os.system
