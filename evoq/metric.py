"""What a trial function may return, and how it becomes a metric (pure)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from .errors import EvoqError


class InvalidMetricError(EvoqError, ValueError):
    """A trial returned something that is not a usable metric; the message says what."""


def parse_metric(result: Any) -> float:
    """A finite float from a trial's return value.

    Accepted: a finite real number (int, float, numpy scalar, ...), or a mapping with a
    ``default`` key holding one (as NNI trials report: ``{"default": acc, "loss": ...}``).
    """
    value = result
    if isinstance(result, Mapping):
        if "default" not in result:
            keys = ", ".join(map(repr, list(result)[:5]))
            raise InvalidMetricError(f"returned a mapping without a 'default' key (keys: {keys})")
        value = result["default"]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "..."
        raise InvalidMetricError(
            f"returned {text} of type {type(value).__name__}: expected a finite number "
            "or a mapping with a 'default' key"
        )
    metric = float(value)
    if not math.isfinite(metric):
        raise InvalidMetricError(f"returned a non-finite metric ({metric})")
    return metric
