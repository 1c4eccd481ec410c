"""The dashboard's web app (Starlette): pages rendered by Jinja2, updates pushed as server-sent
events, static files from the package (Plotly's bundle from the ``plotly`` package itself).

Pages: ``/`` (every experiment), ``/x/WHERE/NAME`` (one experiment, live), ``/x/WHERE/NAME/trial/N``
(one trial). Each page has a ``.../stream`` of server-sent events: the HTML fragments that
changed (rendered by the same templates as the page) and, for the charts, the results that
arrived since the client's cursor. ``/x/WHERE/NAME/state.json`` is the experiment's state in
evoq's JSON shape (:func:`evoq.report.summary`), ``/api/experiments`` the list.

Every route is a GET that reads; nothing writes to Redis or to a log.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager, suppress
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

import redis
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..report import clock_text, json_safe, metric_text, printable
from . import views
from .service import Dashboard, DashboardError, UnknownExperiment
from .views import audit_view
from .watch import Watcher

_T = TypeVar("_T")

TICK_S = 1.0
"""Seconds between pushes when nothing changed (elapsed times and heartbeats age)."""
MIN_PUSH_S = 0.15
"""Least time between two pushes to one page (a burst of events becomes one update)."""
READY_WAIT_S = 20.0
"""How long a page waits for the first read of a log before it shows what was folded so far."""
LIST_PUSH_S = 2.0
"""Seconds between refreshes of the experiment list page."""

SHARED_FRAGMENTS = ("failures", "lineage", "population", "params")
LIVE_FRAGMENTS = ("progress", "running", "workers", "audit")


class _TrialNumber(Convertor[int]):
    """A trial number in a URL: at most 18 digits (a longer one matches no route: 404, where
    Starlette's ``int`` answered 500 past Python's 4300-digit limit)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("trial", _TrialNumber())


def _shown(value: Any) -> Any:
    """Every value a template prints: logged text with its control characters shown escaped
    (:func:`printable`; bidirectional overrides would reorder what the page says). Markup
    (fragments rendered by these templates) is left as it is."""
    return printable(value) if isinstance(value, str) and not isinstance(value, Markup) else value


_env = Environment(
    loader=PackageLoader("evoq.dashboard", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_shown,
)
_env.filters["metric"] = lambda v: metric_text(v) if isinstance(v, int | float) else "-"
_env.filters["clock"] = clock_text


def plotly_js() -> Path:
    """``plotly.min.js`` as the ``plotly`` package ships it (found without importing plotly).

    Raises:
        DashboardError: the ``plotly`` package is not installed.
    """
    spec = find_spec("plotly")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    raise DashboardError(
        "the dashboard needs the plotly package for its charts: pip install 'evoq[dashboard]'"
    )


class _Asset:
    """A file served from memory with a strong ETag, long caching and a gzip variant."""

    def __init__(self, path: Path, media_type: str) -> None:
        self.path, self.media_type = path, media_type
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._gz: bytes | None = None
        self.etag = ""

    def _load(self) -> None:
        with self._lock:
            if self._data is None:
                data = self.path.read_bytes()
                self.etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
                self._gz = gzip.compress(data, compresslevel=6, mtime=0)
                self._data = data

    async def response(self, request: Request) -> Response:
        if self._data is None:
            await asyncio.to_thread(self._load)
        assert self._data is not None and self._gz is not None
        headers = {"ETag": self.etag, "Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}  # fmt: skip
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(
                self._gz, media_type=self.media_type, headers={**headers, "Content-Encoding": "gzip"}
            )
        return Response(self._data, media_type=self.media_type, headers=headers)


class _SecurityHeaders:
    """Headers for every response: no framing, no sniffing, no referrer, scripts from here only
    (Plotly's WebGL charts need ``unsafe-eval``; nothing inline is executed)."""

    CSP = (
        "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", self.CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _json_for_html(data: Any) -> Markup:
    """JSON safe inside a ``<script type="application/json">`` element."""
    return Markup(views.json_for_html(data))


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(json_safe(data), separators=(',', ':'), default=str)}\n\n".encode()


class _Pages:
    """Rendering with a per-version cache of the fragments every page of an experiment shares."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash
        self._cache: dict[tuple[str, str], tuple[int, dict[str, Any], dict[str, Markup]]] = {}
        self._lock = threading.Lock()
        self.asset_version = hashlib.blake2b(
            b"".join(
                (Path(__file__).parent / "static" / f).read_bytes() for f in ("dashboard.js", "dashboard.css")
            ),
            digest_size=6,
        ).hexdigest()

    def context(self, request: Request, **extra: Any) -> dict[str, Any]:
        base = request.scope.get("root_path", "").rstrip("/")
        return {
            "base": base,
            "asset_version": self.asset_version,
            "evoq_version": __version__,
            "now": clock_text(time.time()),
            **extra,
        }

    def render(self, template: str, ctx: Mapping[str, Any]) -> str:
        return _env.get_template(template).render(ctx)

    def shared(self, w: Watcher, ctx: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Markup]]:
        """The shared data and fragments of ``w`` at its current version (cached per version)."""
        key = (w.where, w.name)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] == w.version:
            return cached[1], cached[2]
        shared = self.dash.shared(w)
        frags = {f: Markup(self.render(f"_{f}.html", {**ctx, "shared": shared})) for f in SHARED_FRAGMENTS}
        with self._lock:
            self._cache[key] = (shared["version"], shared, frags)
        return shared, frags

    def live(self, w: Watcher, shared: dict[str, Any], ctx: Mapping[str, Any]) -> dict[str, Markup]:
        live = self.dash.live(w, shared, time.time())
        c = {**ctx, "shared": shared, "live": live}
        return {f: Markup(self.render(f"_{f}.html", c)) for f in LIVE_FRAGMENTS}


def create_app(dash: Dashboard, *, allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The dashboard as an ASGI app over ``dash``.

    Args:
        dash: the experiments to show.
        allowed_hosts: ``Host`` headers accepted (None: any); a dashboard on the loopback
            interface accepts only local names, so that a web page cannot read it through DNS
            rebinding.
    """
    pages = _Pages(dash)
    plotly = _Asset(plotly_js(), "text/javascript")

    def exp_ctx(request: Request, where: str, name: str) -> dict[str, Any]:
        ctx = pages.context(request, where=where, name=name)
        ctx["exp_url"] = f"{ctx['base']}/x/{where}/{name}"
        return ctx

    async def watcher_or_404(request: Request) -> Watcher | Response:
        where, name = request.path_params["where"], request.path_params["name"]
        try:
            w = await asyncio.to_thread(dash.watcher, where, name)
        except (UnknownExperiment, redis.RedisError) as exc:
            code = 404 if isinstance(exc, UnknownExperiment) else 503
            message = str(exc) if code == 404 else f"cannot reach Redis: {exc}"
            html = pages.render("error.html", pages.context(request, message=message, boot=_json_for_html({"page": "error"})))  # fmt: skip
            return HTMLResponse(html, status_code=code)
        await asyncio.to_thread(w.ready.wait, READY_WAIT_S)
        return w

    async def overview(request: Request) -> Response:
        listing = await asyncio.to_thread(dash.experiments)
        places = []
        if dash.client is not None:
            places.append("the Redis")
        places.append(f"the embedded logs in {dash.log_dir}")
        ctx = pages.context(
            request,
            rows=listing.rows,
            listing_error=listing.error,
            where_note="Experiments in " + " and ".join(places) + ".",
        )
        ctx["boot"] = _json_for_html({"page": "overview", "stream": f"{ctx['base']}/overview/stream"})
        return HTMLResponse(pages.render("overview.html", ctx))

    async def overview_stream(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            last = None
            while not dash.closing.is_set():
                listing = await asyncio.to_thread(dash.experiments)
                ctx = pages.context(request, rows=listing.rows, listing_error=listing.error)
                html = pages.render("_experiments.html", ctx)
                if html != last:
                    yield _sse("update", {"html": {"experiments": html}})
                    last = html
                else:
                    yield b": tick\n\n"
                await _sleep_unless(dash.closing, LIST_PUSH_S)

        return _stream(events())

    async def experiment(request: Request) -> Response:
        w = await watcher_or_404(request)
        if isinstance(w, Response):
            return w
        ctx = exp_ctx(request, w.where, w.name)
        shared, frags = await _page_work(dash, pages.shared, w, ctx)
        live = await _page_work(dash, pages.live, w, shared, ctx)
        points, n, generation = await _page_work(dash, dash.points_text, w)
        boot = {
            "page": "experiment",
            "stream": f"{ctx['exp_url']}/stream",
            "trial_url": f"{ctx['exp_url']}/trial/",
            "v": shared["version"],
            "g": generation,
            "n": n,
            "population": shared["population"],
            "maximize": shared["maximize"],
        }
        head = views.json_for_html(boot)  # then the points, encoded once per point and kept
        ctx.update(
            fragments={**frags, **live},
            boot=Markup(f'{head[:-1]},"points":{points}}}'),
            plotly_version=plotly.etag.strip('"') or __version__,
        )
        return HTMLResponse(pages.render("experiment.html", ctx), headers={"Cache-Control": "no-store"})

    async def experiment_stream(request: Request) -> Response:
        w = await watcher_or_404(request)
        if isinstance(w, Response):
            return w
        ctx = exp_ctx(request, w.where, w.name)
        q = request.query_params
        cursor = {"v": _int(q.get("v")), "g": _int(q.get("g")), "n": _int(q.get("n"))}

        def build() -> dict[str, Any]:
            shared, frags = pages.shared(w, ctx)
            points, n, generation, reset = dash.points(w, cursor["n"], cursor["g"])
            html: dict[str, str] = dict(pages.live(w, shared, ctx))
            message: dict[str, Any] = {"v": shared["version"], "g": generation, "n": n, "points": points}
            if shared["version"] != cursor["v"] or reset:
                html.update(frags)
                message["population"] = shared["population"]
                message["maximize"] = shared["maximize"]
            message["reset"] = reset
            message["html"] = html
            cursor.update(v=shared["version"], g=generation, n=n)
            return message

        return _stream(_follow(w, dash, build, first_now=w.version != cursor["v"]))

    async def trial(request: Request) -> Response:
        w = await watcher_or_404(request)
        if isinstance(w, Response):
            return w
        number = request.path_params["trial"]
        ctx = exp_ctx(request, w.where, w.name)
        data = await _page_work(dash, dash.trial, w, number, time.time())
        if data is None:
            ctx.update(message=f"experiment {w.name!r} has no trial {number} (yet)", boot=_json_for_html({"page": "error"}))  # fmt: skip
            return HTMLResponse(pages.render("error.html", ctx), status_code=404)
        ctx["trial"] = data
        # the stream pushes the trial's fragment only once it differs from the one served here
        shown = _digest(pages.render("_trial.html", ctx))
        ctx["boot"] = _json_for_html(
            {"page": "trial", "stream": f"{ctx['exp_url']}/trial/{number}/stream?h={shown}"}
        )
        return HTMLResponse(pages.render("trial.html", ctx), headers={"Cache-Control": "no-store"})

    async def trial_stream(request: Request) -> Response:
        w = await watcher_or_404(request)
        if isinstance(w, Response):
            return w
        number = request.path_params["trial"]
        ctx = exp_ctx(request, w.where, w.name)
        last = {"h": request.query_params.get("h", "")}

        def build() -> dict[str, Any] | None:
            data = dash.trial(w, number, time.time())
            if data is None:
                return None
            html = pages.render("_trial.html", {**ctx, "trial": data})
            digest = _digest(html)
            if digest == last["h"]:
                return None
            last["h"] = digest
            return {"html": {"trial": html}}

        return _stream(_follow(w, dash, build, first_now=False))

    async def state_json(request: Request) -> Response:
        w = await watcher_or_404(request)
        if isinstance(w, Response):
            return JSONResponse({"error": "no such experiment"}, status_code=404)
        shared = await asyncio.to_thread(dash.shared, w)
        audit = w.audit
        extra = {
            "version": shared["version"],
            "points": shared["points"],
            "audit": audit_view(audit.report, audit.checked, audit.fed, audit.finished),
            "error": shared["error"],
        }
        return JSONResponse(json_safe({**shared["summary"], "dashboard": extra}))

    async def experiments_json(request: Request) -> Response:
        listing = await asyncio.to_thread(dash.experiments)
        return JSONResponse({"experiments": listing.rows, "error": listing.error})

    async def plotly_route(request: Request) -> Response:
        return await plotly.response(request)

    middleware = [
        Middleware(_SecurityHeaders),
        Middleware(GZipMiddleware, minimum_size=2048, compresslevel=1),
    ]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    routes = [
        Route("/", overview),
        Route("/overview/stream", overview_stream),
        Route("/api/experiments", experiments_json),
        Route("/vendor/plotly.min.js", plotly_route),
        Route("/x/{where}/{name}", experiment),
        Route("/x/{where}/{name}/stream", experiment_stream),
        Route("/x/{where}/{name}/state.json", state_json),
        Route("/x/{where}/{name}/trial/{trial:trial}", trial),
        Route("/x/{where}/{name}/trial/{trial:trial}/stream", trial_stream),
        Mount("/static", StaticFiles(packages=[("evoq.dashboard", "static")]), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(dash.close)

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def _page_work(dash: Dashboard, fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn(*args)`` in a thread, marked as page work (the live audit waits for it)."""

    def run() -> _T:
        with dash.foreground.busy():
            return fn(*args)

    return await asyncio.to_thread(run)


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sleep_unless(flag: threading.Event, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not flag.is_set() and time.monotonic() < end:
        await asyncio.sleep(min(0.25, max(0.0, end - time.monotonic())))


def _digest(html: str) -> str:
    """A short fingerprint of a rendered fragment: what a page already shows."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]


async def _follow(
    w: Watcher, dash: Dashboard, build: Callable[[], dict[str, Any] | None], *, first_now: bool
) -> AsyncIterator[bytes]:
    """Push ``build()`` after each change of ``w`` (at most every :data:`MIN_PUSH_S`) and every
    :data:`TICK_S` otherwise; ``None`` from ``build`` sends a comment only (a keep-alive)."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def wake() -> None:
        with suppress(RuntimeError):  # the loop closed while the watcher was folding
            loop.call_soon_threadsafe(changed.set)

    unsubscribe = w.subscribe(wake)
    if first_now:
        changed.set()
    try:
        yield b"retry: 1000\n\n"
        while not dash.closing.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), TICK_S)
            changed.clear()
            message = await _page_work(dash, build)
            yield _sse("update", message) if message is not None else b": tick\n\n"
            await asyncio.sleep(MIN_PUSH_S)
    finally:
        unsubscribe()
