"""``evoq dashboard``: a live, read-only web view of the experiments of a Redis and of the
embedded logs in ``.evoq/``.

* :mod:`evoq.dashboard.watch` — follows a log as it grows (``XREAD BLOCK``, or a growing file),
  folding each record once into the same fold as every other command
  (:class:`~evoq.report.TrialTable`: ``StateBuilder`` and the trial rows); audits it as it goes;
  reads heartbeats and RQ workers with read-only commands.
* :mod:`evoq.dashboard.views` — what the pages show, as pure functions of the fold.
* :mod:`evoq.dashboard.service` — the experiments listed and watched (:class:`Dashboard`).
* :mod:`evoq.dashboard.app` — the Starlette app: Jinja2 pages, server-sent events, Plotly charts
  served from the ``plotly`` package.
* :mod:`evoq.dashboard.server` — uvicorn on the loopback interface (:class:`DashboardServer`).

The web modules need the ``dashboard`` extra (``pip install 'evoq[dashboard]'``); importing
this package alone does not.
"""

from __future__ import annotations

from .service import Dashboard, DashboardError, UnknownExperiment

__all__ = ["Dashboard", "DashboardError", "UnknownExperiment"]
