"""Trial functions used by the integration tests (run inside real `rq worker` processes)."""

from __future__ import annotations

import math
import os
import time
from typing import Any


def quick(config: dict[str, Any]) -> float:
    """A short trial: sleeps ``EVOQ_TEST_SLEEP`` seconds (default 0.05)."""
    time.sleep(float(os.environ.get("EVOQ_TEST_SLEEP", "0.05")))
    return float(config["x"]) * 10 + float(config["y"])


def nni_style(config: dict[str, Any]) -> dict[str, float]:
    return {"default": quick(config), "loss": 1.0}


def misbehave(config: dict[str, Any]) -> Any:
    """Fails in the way config['mode'] names."""
    mode = config["mode"]
    if mode == "raise":
        raise ZeroDivisionError("division by zero in the model")
    if mode == "nan":
        return math.nan
    if mode == "string":
        return "0.93"
    if mode == "none":
        return None
    if mode == "hang":
        time.sleep(60)
    return 1.0


def always_fails(config: dict[str, Any]) -> float:
    raise RuntimeError("CUDA out of memory")


def mark(*args: Any) -> None:
    """Would-be callback: leaves a marker file if it ever runs."""
    from pathlib import Path

    Path(os.environ["EVOQ_TEST_MARKER"]).touch()


def busy(config: dict[str, Any]) -> float:
    """Holds the GIL for ``EVOQ_TEST_BUSY`` seconds (default 0.05), as pure-Python training does."""
    end = time.perf_counter() + float(os.environ.get("EVOQ_TEST_BUSY", "0.05"))
    n = 0
    while time.perf_counter() < end:
        n += 1
    return float(config["x"]) * 10 + float(config["y"])


def fail_or_hang(config: dict[str, Any]) -> float:
    """Hangs for a minute when ``x < 2``, raises otherwise."""
    if config["x"] < 2:
        time.sleep(60)
        return 0.0
    raise RuntimeError("bad config")


def sometimes(config: dict[str, Any]) -> float:
    """Like :func:`quick`, but raises a recognisable error when ``x < 2``."""
    time.sleep(float(os.environ.get("EVOQ_TEST_SLEEP", "0.05")))
    if config["x"] < 2:
        raise RuntimeError(f"CUDA out of memory (simulated) on config y={config['y']}")
    return float(config["x"]) * 10 + float(config["y"])
