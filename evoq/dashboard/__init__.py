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
this package alone does not: :func:`dashboard_server` says so in one line when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from .service import Dashboard, DashboardError, UnknownExperiment

if TYPE_CHECKING:
    from .server import DashboardServer

__all__ = ["Dashboard", "DashboardError", "UnknownExperiment", "dashboard_during_run", "dashboard_server"]


def dashboard_server(
    client: redis.Redis | None,
    log_dir: Path,
    queues: Sequence[str],
    *,
    embedded_client: Any = None,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int,
    public: bool = False,
    allow_hosts: Sequence[str] = (),
    root_path: str = "",
) -> DashboardServer:
    """A :class:`~evoq.dashboard.server.DashboardServer` over the experiments of ``client`` and
    ``log_dir`` (see :class:`Dashboard` and the server for the arguments), not started yet.

    Raises:
        DashboardError: the ``dashboard`` extra is not installed, or the socket cannot be bound.
    """
    try:
        from .app import plotly_js
        from .server import DashboardServer
    except ImportError as exc:
        raise DashboardError(
            f"the dashboard needs the 'dashboard' extra: pip install 'evoq[dashboard]' ({exc.name} is missing)"
        ) from None
    plotly_js()  # fail now, in one line, if plotly is missing
    dash = Dashboard(client, log_dir, queues=queues, embedded_client=embedded_client, embedded_name=name)
    return DashboardServer(dash, host, port, public=public, allow_hosts=allow_hosts, root_path=root_path)


@contextmanager
def dashboard_during_run(
    port: int | None,
    name: str,
    queue: str,
    log_dir: Path,
    *,
    client: redis.Redis | None = None,
    embedded_client: Any = None,
    notify: Callable[[str], None] = lambda message: None,
) -> Iterator[None]:
    """Serve the dashboard on 127.0.0.1:``port`` (None: not at all) while the block runs: over
    the Redis of ``client``, or over the embedded logs with the in-process Redis of an embedded
    run (``embedded_client``) for its heartbeats and worker threads. ``notify`` gets the line
    telling where it is.

    Raises:
        DashboardError: as :func:`dashboard_server`.
    """
    if port is None:
        yield
        return
    server = dashboard_server(
        client, log_dir, (queue,), embedded_client=embedded_client, name=name, port=port
    )
    server.start()
    where = "embedded" if client is None else "redis"
    server.dash.follow_when_it_exists(where, name)
    notify(f"dashboard on {server.url}/x/{where}/{name} (read-only; it stops with the run)")
    try:
        yield
    finally:
        server.stop()
