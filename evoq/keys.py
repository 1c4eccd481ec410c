"""Every Redis key and RQ id evoq uses, built in one place.

One experiment's keys share the hash tag ``{name}`` so that they live in one cluster slot and a
script or transaction over them (the controller's commit) is possible on Redis Cluster too. Many
experiments can share a Redis and a queue: nothing here is global except :data:`EXPERIMENTS`, an
index of names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_QUEUE = "evoq"
EXPERIMENTS = "evoq:experiments"
"""A set of the experiment names known to this Redis (for ``evoq status``)."""

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid experiment name (RQ job ids allow ``[A-Za-z0-9_-]``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"experiment name {name!r} is invalid: use 1 to 64 letters, digits, '_' or '-' "
            "(it becomes part of RQ job ids)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one experiment."""

    name: str

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def prefix(self) -> str:
        """``evoq:{name}`` — the hash-tagged namespace."""
        return f"evoq:{{{self.name}}}"

    @property
    def stream(self) -> str:
        """The event log: a Redis Stream, never trimmed; field ``e`` holds one msgpack record."""
        return f"{self.prefix}:events"

    @property
    def lease(self) -> str:
        """The controller lease: ``"<fence>:<owner>"`` with a TTL, renewed while it runs."""
        return f"{self.prefix}:lease"

    @property
    def fence(self) -> str:
        """A counter handing out fencing tokens, one per lease acquisition."""
        return f"{self.prefix}:fence"

    def heartbeat(self, trial: int, attempt: int) -> str:
        """Set with a TTL by the worker running ``(trial, attempt)`` while the trial runs."""
        return f"{self.prefix}:hb:{trial}:{attempt}"

    def job_id(self, trial: int, attempt: int) -> str:
        """The deterministic RQ job id of a trial run."""
        return f"evoq-{self.name}-{trial}-{attempt}"


def queue_controllers(queue: str) -> str:
    """A sorted set of the experiments whose controllers submit to ``queue`` (score: the last
    time each said so): the workers listening on a shared queue are split between them."""
    return f"evoq:queue:{queue}:controllers"


STREAM_FIELD = b"e"
"""The one field of each stream entry: the encoded event record."""
