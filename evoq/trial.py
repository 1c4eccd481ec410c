"""The trial side of a command trial: read the config, report results (standard library only).

A script run as a command trial (see :mod:`evoq.trialspec`) gets its config as JSON in the
environment (``EVOQ_CONFIG``) and in a file (``EVOQ_CONFIG_FILE``), and reports through the file
descriptor ``EVOQ_REPORT_FD``, one JSON object per line::

    {"final": 0.97}                        # the trial's metric (a number, or {"default": x, ...})
    {"intermediate": 0.81, "step": 3}      # a learning-curve point (never enters the population)

From Python::

    import evoq.trial
    config = evoq.trial.config()
    ...
    evoq.trial.report_intermediate(val_acc, step=epoch)
    evoq.trial.report(val_acc)

Any other language can write those lines to the descriptor (``echo '{"final": 0.9}' >&$EVOQ_REPORT_FD``).
NNI trial code needs none of this: ``import nni`` finds evoq's NNI shim first on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


class NotATrialError(RuntimeError):
    """The process was not started by an evoq worker (no ``EVOQ_CONFIG``/``EVOQ_REPORT_FD``)."""


def config() -> dict[str, Any]:
    """This trial's config (a fresh copy)."""
    raw = os.environ.get("EVOQ_CONFIG")
    if raw is None:
        raise NotATrialError("EVOQ_CONFIG is not set: this process was not started by an evoq worker")
    value: dict[str, Any] = json.loads(raw)
    return value


def _send(message: Mapping[str, Any]) -> None:
    fd = os.environ.get("EVOQ_REPORT_FD")
    if fd is None:
        raise NotATrialError("EVOQ_REPORT_FD is not set: this process was not started by an evoq worker")
    line = (json.dumps(message, allow_nan=True, default=float) + "\n").encode()
    os.write(int(fd), line)


def report(metric: float | Mapping[str, Any]) -> None:
    """Report the trial's final metric (a number, or a mapping with a ``default`` key)."""
    _send({"final": metric})


def report_intermediate(value: float | Mapping[str, Any], step: int | None = None) -> None:
    """Report an intermediate result (a learning-curve point) at ``step`` (default: the count
    of intermediate results reported so far)."""
    _send({"intermediate": value, "step": step})
