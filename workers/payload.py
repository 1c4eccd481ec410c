"""The one argument of evoq's RQ jobs, checked field by field before anything acts on it.

A job payload is plain data (msgpack): ``{"v": 1, "experiment", "trial", "attempt", "config",
"fn", "heartbeat_ttl"}`` and nothing else. Whoever can write to Redis can forge one, so
:func:`parse_payload` checks every key, type and range, and the job id must be the one evoq gives
that run (``evoq-<experiment>-<trial>-<attempt>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evoq.errors import EvoqError
from evoq.keys import Keys, check_name
from evoq.trialspec import MAX_TRIAL

PAYLOAD_VERSION = 1
PAYLOAD_KEYS = frozenset({"v", "experiment", "trial", "attempt", "config", "fn", "heartbeat_ttl"})
MAX_INDEX = 2**53


class PayloadError(EvoqError):
    """A job payload is not one evoq writes; the message names the field."""


@dataclass(frozen=True)
class Payload:
    """A checked job payload."""

    experiment: str
    trial: int
    attempt: int
    config: dict[str, Any]
    fn: str
    heartbeat_ttl: float

    @property
    def keys(self) -> Keys:
        """The experiment's Redis keys."""
        return Keys(self.experiment)

    @property
    def job_id(self) -> str:
        """The RQ job id evoq gives this run."""
        return self.keys.job_id(self.trial, self.attempt)


def make_payload(
    experiment: str, trial: int, attempt: int, config: Mapping[str, Any], fn: str, heartbeat_ttl: float
) -> dict[str, Any]:
    """The job argument for :func:`workers.trial.run_trial` (plain data)."""
    return {
        "v": PAYLOAD_VERSION,
        "experiment": experiment,
        "trial": trial,
        "attempt": attempt,
        "config": dict(config),
        "fn": fn,
        "heartbeat_ttl": heartbeat_ttl,
    }


def parse_payload(obj: Any) -> Payload:
    """Check a job's argument and return it typed.

    Raises:
        PayloadError: anything that evoq would not have written.
    """
    if not isinstance(obj, dict):
        raise PayloadError(f"the job argument must be a map, got {type(obj).__name__}")
    keys = set(obj)
    if keys != PAYLOAD_KEYS:
        extra = sorted(map(repr, keys - PAYLOAD_KEYS))[:5]
        missing = sorted(PAYLOAD_KEYS - keys)
        raise PayloadError(f"the job argument has unknown keys {extra} / lacks {missing}")
    if obj["v"] != PAYLOAD_VERSION or type(obj["v"]) is not int:
        raise PayloadError(f"payload version must be {PAYLOAD_VERSION}, got {obj['v']!r:.40}")
    experiment = obj["experiment"]
    try:
        check_name(experiment)
    except ValueError as exc:
        raise PayloadError(str(exc)) from None
    for name in ("trial", "attempt"):
        value = obj[name]
        if type(value) is not int or not 0 <= value < MAX_INDEX:
            raise PayloadError(f"payload {name} must be a non-negative integer, got {value!r:.40}")
    config = obj["config"]
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise PayloadError("payload config must be a map with string keys")
    fn = obj["fn"]
    if not isinstance(fn, str) or not 0 < len(fn) <= MAX_TRIAL:
        raise PayloadError(f"payload fn must be a trial of at most {MAX_TRIAL} characters")
    ttl = obj["heartbeat_ttl"]
    if type(ttl) not in (int, float) or not math.isfinite(ttl) or not 0.05 <= ttl <= 86400:
        raise PayloadError(f"payload heartbeat_ttl must be 0.05 to 86400 seconds, got {ttl!r:.40}")
    return Payload(experiment, obj["trial"], obj["attempt"], config, fn, float(ttl))
