"""NNI's trial API, for NNI trial code run by evoq unchanged (standard library only).

An evoq worker puts the folder holding this package first on the ``PYTHONPATH`` of a command
trial, so ``import nni`` in a script written for NNI finds this module instead of NNI (which
need not be installed). It implements the calls trial code makes:

``get_next_parameter()``, ``get_current_parameter(tag=None)``, ``report_intermediate_result(x)``,
``report_final_result(x)`` (``x`` a number, or a dict with a ``default`` key, as NNI accepts),
``get_trial_id()``, ``get_experiment_id()``, ``get_sequence_id()``, and ``nni.utils.merge_parameter``.

Results go to the worker through the file descriptor ``EVOQ_REPORT_FD`` (see ``evoq.trial``).
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = [
    "get_current_parameter",
    "get_experiment_id",
    "get_next_parameter",
    "get_sequence_id",
    "get_trial_id",
    "report_final_result",
    "report_intermediate_result",
]

_params: dict[str, Any] | None = None
_steps = 0


def _env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"{name} is not set: this script was not started by an evoq worker")
    return value


def get_next_parameter() -> dict[str, Any]:
    """The hyperparameters of this trial (NNI: the tuner's next parameter set)."""
    global _params
    _params = json.loads(_env("EVOQ_CONFIG"))
    return dict(_params)


def get_current_parameter(tag: str | None = None) -> Any:
    """The parameters handed out by :func:`get_next_parameter` (or one of them, by name)."""
    params = _params if _params is not None else get_next_parameter()
    return dict(params) if tag is None else params[tag]


def _send(message: dict[str, Any]) -> None:
    line = (json.dumps(message, allow_nan=True, default=float) + "\n").encode()
    os.write(int(_env("EVOQ_REPORT_FD")), line)


def report_intermediate_result(metric: Any) -> None:
    """Report an intermediate result (a learning-curve point)."""
    global _steps
    _send({"intermediate": metric, "step": _steps})
    _steps += 1


def report_final_result(metric: Any) -> None:
    """Report the trial's final result."""
    _send({"final": metric})


def get_trial_id() -> str:
    """This trial run's id (``EXPERIMENT-TRIAL-ATTEMPT``)."""
    return _env("EVOQ_TRIAL_ID")


def get_experiment_id() -> str:
    """The experiment's name."""
    return _env("EVOQ_EXPERIMENT")


def get_sequence_id() -> int:
    """The trial's index in the experiment (0, 1, 2, ...)."""
    return int(_env("EVOQ_TRIAL"))
