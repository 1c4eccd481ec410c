"""A job class that runs nothing but evoq's trial entry.

``rq worker --job-class workers.job.EvoqJob`` makes a worker refuse, before anything is
imported, any job whose function is not :data:`ALLOWED_FUNCTIONS`, that names an instance to
call a method on, or that carries success/failure/stopped callbacks. The job then fails with the
reason; no code named by the job runs. (A data-only serializer alone would not stop this: RQ
imports whatever function path a job names.)
"""

from __future__ import annotations

from typing import Any

from rq.job import Job

# Imported here, in `rq worker`'s main process (which loads this module as --job-class), so that a
# forking Worker's work horses inherit evoq instead of importing it again for every job (~18 ms of
# CPU per job measured by scripts/bench_system.py). The user's trial module is still imported only
# in the horse: nothing touches CUDA before the fork.
import workers.trial  # noqa: F401
from evoq.errors import EvoqError

ALLOWED_FUNCTIONS = frozenset({"workers.trial.run_trial"})


class RefusedJobError(EvoqError):
    """The job names code this worker will not run."""


class EvoqJob(Job):
    """An RQ job restricted to evoq's trial entry, without callbacks."""

    def refusal(self) -> str | None:
        """Why this job must not run, or None when it may."""
        name = self.func_name
        if name not in ALLOWED_FUNCTIONS:
            return f"job function {name!r} is not allowed (only {', '.join(sorted(ALLOWED_FUNCTIONS))})"
        if self.instance is not None:
            return "jobs calling a method of an instance are not allowed"
        names = (self._success_callback_name, self._failure_callback_name, self._stopped_callback_name)
        if any(names):
            return f"job callbacks are not allowed (got {[n for n in names if n]})"
        return None

    @property
    def func(self) -> Any:
        """The job's function, after the allowlist check."""
        why = self.refusal()
        if why is not None:
            raise RefusedJobError(f"evoq worker refused job {self.id}: {why}")
        return super().func

    # Callbacks never run, whatever the job says: refusal() fails such a job before it starts.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None
