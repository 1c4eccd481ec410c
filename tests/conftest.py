"""Test configuration: Hypothesis profiles and the ``slow`` marker.

Layout: ``tests/unit`` (the pure core, no I/O beyond temporary files), ``tests/contract`` (every
event-log backend against one contract, real Redis included), ``tests/integration`` (real
redis-server, real ``rq worker`` processes, ``evoq`` as a subprocess). Tests marked ``slow`` run
benchmarks, the fault campaign or many whole experiments; ``scripts/test`` runs everything,
``scripts/test -m "not slow"`` the fast subset.

Hypothesis: the ``ci`` profile (default) has no deadline (this machine is shared and noisy) and
derandomizes, so a run is repeatable; ``HYPOTHESIS_PROFILE=dev`` explores with fresh seeds.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
