"""Serving the dashboard with uvicorn: on the loopback interface unless told otherwise, in the
calling thread (``evoq dashboard``) or in a background thread (``evoq run --dashboard``).

The listening socket is bound here, before uvicorn starts, so that a port in use or a bad
address is a one-line :class:`DashboardError` and not a server log line followed by an exit.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Sequence
from types import FrameType

import uvicorn

from .app import create_app
from .service import Dashboard, DashboardError

DEFAULT_PORT = 8765
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
"""``Host`` headers a loopback-bound dashboard accepts (plus ``--allow-host`` names)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    Raises:
        DashboardError: the address is unknown or cannot be bound (e.g. the port is in use).
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DashboardError(f"cannot serve the dashboard on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"port {port} on {host} is in use (another dashboard?); pick another port "
                "(`evoq dashboard --port N`, `evoq run SPEC --dashboard N`)"
            ) from None
        raise DashboardError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, telling the dashboard's event streams to end as soon as it is asked to
    stop (else each open page would hold the shutdown for the graceful timeout)."""

    def __init__(self, config: uvicorn.Config, closing: threading.Event) -> None:
        super().__init__(config)
        self.closing = closing

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.closing.set()
        super().handle_exit(sig, frame)


class DashboardServer:
    """A dashboard over ``dash`` listening on ``host:port``.

    Args:
        dash: what to show.
        host: the interface; anything but loopback needs ``public=True`` (the caller's explicit
            flag), since the dashboard has no authentication of its own.
        port: the TCP port (0: a free one; see :attr:`url`).
        public: allow a non-loopback ``host``.
        allow_hosts: more ``Host`` header names to accept (a reverse proxy's public name); a
            loopback dashboard accepts only local names otherwise.
        root_path: the path prefix a reverse proxy serves the dashboard under (e.g. ``/evoq``).

    Raises:
        DashboardError: a non-loopback host without ``public``, or the socket cannot be bound.
    """

    def __init__(
        self,
        dash: Dashboard,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        public: bool = False,
        allow_hosts: Sequence[str] = (),
        root_path: str = "",
    ) -> None:
        if not is_loopback(host) and not public:
            raise DashboardError(
                f"the dashboard has no login: serving it on {host} would show every experiment to anyone "
                "who can reach this machine; pass --i-know-this-is-public to do it anyway (see README: Dashboard)"
            )
        self.dash = dash
        self.sock = bind(host, port)
        self.port: int = self.sock.getsockname()[1]
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        """Where this server answers (a reverse proxy adds ``root_path`` in front of its paths)."""
        if is_loopback(host):
            hosts: list[str] | None = [*LOCAL_NAMES, *allow_hosts]
        else:
            hosts = list(allow_hosts) or None
        app = create_app(dash, allowed_hosts=hosts)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            root_path=root_path.rstrip("/"),
            timeout_graceful_shutdown=3,
            proxy_headers=False,
        )
        self.server = _Uvicorn(config, dash.closing)
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM (then stop the watchers)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.dash.close()
            self.sock.close()

    def start(self, timeout: float = 30.0) -> DashboardServer:
        """Serve from a daemon thread; return once it accepts connections.

        Raises:
            DashboardError: the server did not start within ``timeout`` seconds.
        """
        self._thread = threading.Thread(target=self.serve, name="evoq-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DashboardError(f"the dashboard did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start` (and its watchers)."""
        self.dash.closing.set()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
