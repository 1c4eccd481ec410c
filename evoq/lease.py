"""The controller lease: one controller per experiment, fenced, with a TTL.

The lease key holds ``"<fence>:<owner>"``; the fence is a counter incremented at every
acquisition, so two controllers never hold the same value. The holder renews the key's TTL as it
goes (a third of the TTL at the latest) and every write it makes is conditional on the key still
holding its value (the controller's commit script checks it in the same atomic step as the
append). A controller that stalls longer than the TTL loses the lease and must stop.

The Lua scripts are registered once per client (``register_script``: EVALSHA, loading the script
again after a Redis restart emptied the script cache).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis

from .errors import EvoqError
from .keys import Keys

log = logging.getLogger("evoq.lease")

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RECLAIM = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if not v then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""


class ControllerError(EvoqError, RuntimeError):
    """The controller cannot go on; the message says why (no traceback needed)."""


class LeaseHeldError(ControllerError):
    """Another controller holds this experiment's lease."""


class LeaseLostError(ControllerError):
    """This controller's lease was taken over or expired; it must stop writing."""


def default_owner() -> str:
    """``host:pid:random`` — who holds a lease, as other controllers are told."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease of one experiment, held (or not) by this process.

    Args:
        client: a Redis client (bytes responses).
        keys: the experiment's keys.
        ttl: seconds the key lives without renewal.
        owner: who this is (default :func:`default_owner`).
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: float, owner: str | None = None) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl
        self.owner = owner or default_owner()
        self.value: bytes | None = None
        self._renewed = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._reclaim = client.register_script(_RECLAIM)

    @property
    def ttl_ms(self) -> int:
        """The TTL in milliseconds."""
        return max(int(self.ttl * 1000), 1)

    def acquire(self, *, wait: bool, stop: threading.Event) -> None:
        """Take the lease, or wait for it (``wait``) until it is free or ``stop`` is set.

        Raises:
            LeaseHeldError: another controller holds it and ``wait`` is false.
            ControllerError: stopped while waiting.
        """
        announced = False
        while True:
            fence = int(self.client.incr(self.keys.fence))
            value = f"{fence}:{self.owner}".encode()
            if self.client.set(self.keys.lease, value, nx=True, px=self.ttl_ms):
                self.value = value
                self._renewed = time.monotonic()
                return
            holder: Any = self.client.get(self.keys.lease)
            who = holder.decode(errors="replace") if isinstance(holder, bytes) else "?"
            if not wait:
                raise LeaseHeldError(
                    f"experiment {self.keys.name!r} is already run by another controller "
                    f"(lease {who}); stop it first, or pass --wait to take over when it stops"
                )
            if not announced:
                log.warning("waiting for controller %s to release experiment %r", who, self.keys.name)
                announced = True
            if stop.wait(min(1.0, self.ttl / 3)):
                raise ControllerError("stopped while waiting for the lease")

    def renew(self, *, force: bool = False) -> None:
        """Renew the TTL if a third of it has passed (or ``force``).

        Raises:
            LeaseLostError: the key no longer holds this controller's value.
        """
        now = time.monotonic()
        if not force and now - self._renewed < self.ttl / 3:
            return
        if not self._renew(keys=[self.keys.lease], args=[self.value or b"", self.ttl_ms]):
            raise LeaseLostError(
                f"lost the lease on experiment {self.keys.name!r} (another controller took over, "
                "or this one stalled longer than the lease TTL)"
            )
        self._renewed = now

    def reclaim(self) -> None:
        """After Redis came back: keep the lease if it is still ours, or set it again if the key
        is gone (a restarted Redis may have lost it); raise LeaseLostError if another took it."""
        if not self._reclaim(keys=[self.keys.lease], args=[self.value or b"", self.ttl_ms]):
            raise LeaseLostError(f"lost the lease on experiment {self.keys.name!r} while Redis was away")
        self._renewed = time.monotonic()

    def check(self, lease_value: Any) -> None:
        """Raise LeaseLostError unless ``lease_value`` (read inside a transaction) is ours."""
        if lease_value != self.value:
            raise LeaseLostError(f"lost the lease on experiment {self.keys.name!r}")

    def release(self) -> None:
        """Give the lease back if it is still ours (best effort)."""
        if self.value is not None:
            try:
                self._release(keys=[self.keys.lease], args=[self.value])
            except redis.RedisError as exc:
                log.debug("could not release the lease: %s", exc)
            self.value = None
