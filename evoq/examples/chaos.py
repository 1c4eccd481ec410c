"""A deliberately misbehaving trial for fault campaigns (``scripts/fault_campaign.py``).

``evoq.examples.chaos:trial`` misbehaves deterministically from its config, so that a log
alone tells what each run should have done:

``mode``
    ``"ok"`` returns a finite metric; ``"raise"`` raises; ``"nan"``/``"inf"`` return a
    non-finite float; ``"none"`` returns None; ``"string"`` returns a string (all invalid
    metrics); ``"hang"`` sleeps far past any sensible ``trial_timeout``. A search space with
    mostly ``"ok"`` choices (repeat them) keeps most trials healthy.
``sleep``
    Seconds to sleep before answering (a short random value drawn from the space, e.g.
    ``{_type = "uniform", _value = [0.05, 0.4]}``); default 0.1.
``x``
    Optional number that sets the metric (``x - sleep``), so evolution has something to climb.

:data:`EXPECTED_FAILURE` maps each mode to the failure kind evoq must log for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

MODES = ("ok", "raise", "nan", "inf", "none", "string", "hang")
"""Every behaviour :func:`trial` knows."""

HANG_SECONDS = 30.0
"""How long a ``"hang"`` trial sleeps (far beyond the campaign's ``trial_timeout``)."""

EXPECTED_FAILURE: Mapping[str, str | None] = {
    "ok": None,
    "raise": "error",
    "nan": "invalid_metric",
    "inf": "invalid_metric",
    "none": "invalid_metric",
    "string": "invalid_metric",
    "hang": "timeout",
}
"""The failure kind a run of each mode ends with when the infrastructure does not interfere
(None: it completes)."""


class ChaosError(RuntimeError):
    """Raised by a trial whose mode is ``"raise"``."""


def trial(config: Mapping[str, Any]) -> Any:
    """Sleep ``config["sleep"]`` seconds, then behave as ``config["mode"]`` says (see the module)."""
    mode = str(config.get("mode", "ok"))
    if mode not in MODES:
        raise ValueError(f"unknown chaos mode {mode!r} (known: {', '.join(MODES)})")
    time.sleep(max(0.0, float(config.get("sleep", 0.1))))
    if mode == "raise":
        raise ChaosError(f"chaos trial raised on purpose (config {dict(config)!r})")
    if mode == "nan":
        return math.nan
    if mode == "inf":
        return math.inf
    if mode == "none":
        return None
    if mode == "string":
        return "0.93"
    if mode == "hang":
        time.sleep(HANG_SECONDS)
    return float(config.get("x", 0.0)) - float(config.get("sleep", 0.1))
