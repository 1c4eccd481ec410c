"""Worker-side settings, read from the environment of the ``rq worker`` process.

``EVOQ_ALLOW``
    Comma-separated fnmatch patterns of the trial functions (``module:function``) this worker
    may run, e.g. ``EVOQ_ALLOW="mypkg.train:*,evoq.examples.*"``. A trial outside them fails
    with a clear reason and nothing is imported. Default: evoq's bundled examples only.
``EVOQ_HEARTBEAT_INTERVAL``
    Seconds between refreshes of a running trial's heartbeat key (default: a quarter of the
    TTL the controller asks for).
"""

from __future__ import annotations

import os

DEFAULT_ALLOW = ("evoq.examples.*",)


def allow_patterns() -> tuple[str, ...]:
    """The trial-function allowlist of this worker process."""
    raw = os.environ.get("EVOQ_ALLOW", "")
    patterns = tuple(p.strip() for p in raw.split(",") if p.strip())
    return patterns or DEFAULT_ALLOW


def heartbeat_interval(ttl: float) -> float:
    """Seconds between heartbeat refreshes for a key with ``ttl``."""
    raw = os.environ.get("EVOQ_HEARTBEAT_INTERVAL")
    return float(raw) if raw else max(ttl / 4, 0.05)
