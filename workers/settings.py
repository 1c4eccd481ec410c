"""Worker-side settings, read from the environment of the ``rq worker`` process.

``EVOQ_ALLOW``
    Comma-separated patterns of the trial functions this worker may run (see
    :mod:`evoq.loader` for what a pattern matches), e.g. ``EVOQ_ALLOW="mypkg.train:train"``.
    A trial outside them is reported as ``refused`` and nothing is imported. Default: evoq's
    bundled examples only (``evoq.examples.*``).
``EVOQ_ALLOW_COMMANDS``
    The command trials this worker may run, one per line: a shell-style line
    (``python train.py --epochs 5``: that exact argv, run in the trial directory, nothing
    appended) or the spec's table as JSON (``{"command": [...], "cwd": "mnist", "args": "flags"}``).
    Compared exactly; default: none.
``EVOQ_TRIAL_DIR``, ``EVOQ_TRIAL_LOG_DIR``
    Where command trials run (their ``cwd`` is relative to it; default: the worker's working
    directory) and where their output goes (default ``~/.cache/evoq/trials``).
``EVOQ_QUEUES``
    Comma-separated queues this worker listens on (``evoq worker`` sets it): a job whose origin
    is another queue is refused.
``EVOQ_HEARTBEAT_INTERVAL``
    Seconds between refreshes of a running trial's heartbeat key (default: a quarter of the
    TTL the controller asks for).
"""

from __future__ import annotations

import os

from evoq.loader import Allowlist, TrialLoadError, parse_allow

DEFAULT_ALLOW = ("evoq.examples.*",)


def allowlist() -> Allowlist:
    """The trial-function allowlist of this worker process (a malformed pattern admits nothing
    and names itself in every refusal)."""
    raw = os.environ.get("EVOQ_ALLOW", "")
    entries = [p.strip() for p in raw.split(",") if p.strip()] or list(DEFAULT_ALLOW)
    commands = [c for c in os.environ.get("EVOQ_ALLOW_COMMANDS", "").splitlines() if c.strip()]
    try:
        return parse_allow(entries, commands)
    except TrialLoadError as exc:
        return Allowlist((), error=str(exc))


def heartbeat_interval(ttl: float) -> float:
    """Seconds between heartbeat refreshes for a key with ``ttl``."""
    raw = os.environ.get("EVOQ_HEARTBEAT_INTERVAL")
    return float(raw) if raw else max(ttl / 4, 0.05)
