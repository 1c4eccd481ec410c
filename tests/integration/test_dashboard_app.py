"""The dashboard's server over embedded logs: pages, JSON, server-sent events as the log grows,
what it refuses; and `evoq dashboard`'s one-line errors. A real uvicorn server on a free port."""

from __future__ import annotations

import dataclasses
import http.client
import json
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import redis

from evoq.audit import counted_terminals
from evoq.codec import encode
from evoq.dashboard import Dashboard, DashboardError
from evoq.dashboard.server import DashboardServer
from evoq.events import Event, TrialCompleted, TrialFailed, TrialSubmitted
from evoq.filelog import FileLog
from evoq.reducer import replay
from evoq.report import metric_text, summary
from evoq.sources import connect
from evoq.strategy import Strategy
from evoq.testing import wait_for

from ..cluster import RedisServer, Worker, controller, evoq, one_line_error, write_spec
from ..sim import simulate


def experiment(name: str, trial: str = "tests.trials:quick", steps: int = 160) -> list[Event]:
    strategy = Strategy(population_size=6, sample_size=2, cycles=400, max_failures=100, max_attempts=3)
    events = simulate(random.Random(7), strategy, steps=steps, fail_rate=0.25)
    created = dataclasses.replace(events[0], name=name, trial=trial)  # type: ignore[type-var]
    now = time.time() - 3600
    return [created, *(dataclasses.replace(e, at=now + e.at) for e in events[1:])]  # type: ignore[type-var]


def write(path: Path, events: list[Event]) -> None:
    FileLog(path).append([encode(e) for e in events])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[DashboardServer, Path, list[Event]]]:
    log_dir = tmp_path / ".evoq"
    events = experiment("alpha")
    half = len(events) // 2
    write(log_dir / "alpha.evoqlog", events[:half])
    server = DashboardServer(Dashboard(None, log_dir), port=0).start()
    yield server, log_dir, events
    server.stop()


def get(url: str, host: str | None = None) -> tuple[int, str]:
    req = Request(url, headers={"Host": host} if host else {})
    try:
        with urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except HTTPError as exc:
        return exc.code, exc.read().decode()


def boot(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="boot">(.*?)</script>', html, re.S)
    assert m, html[:500]
    return json.loads(m.group(1))


def sse_updates(url: str, timeout: float = 30.0) -> Iterator[dict]:
    """The ``update`` events of a server-sent event stream, as they come."""
    m = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
    assert m
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=timeout)
    conn.request("GET", m.group(3))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")
    event = None
    try:
        while True:
            line = resp.readline().decode()
            if not line:
                return
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: ") and event == "update":
                yield json.loads(line[6:])
    finally:
        conn.close()


def test_pages_show_the_experiment_and_its_trials(site):
    server, _log_dir, events = site
    half = len(events) // 2
    state = replay(events[:half])
    code, html = get(server.url + "/")
    assert code == 200 and "/x/embedded/alpha" in html and "running" in html
    code, html = get(server.url + "/x/embedded/alpha")
    assert code == 200
    assert f'<span id="results">{state.results}</span>' in html
    b = boot(html)
    assert b["n"] == len(b["points"]) == sum(1 for p in b["points"])
    assert sum(1 for p in b["points"] if p[3] == "") == state.completed
    assert [p[0] for p in b["population"]] == [i.trial for i in state.population]
    # the state JSON is evoq's one shape, plus what the dashboard adds
    code, text = get(server.url + "/x/embedded/alpha/state.json")
    data = json.loads(text)
    extra = data.pop("dashboard")
    assert data == json.loads(json.dumps(summary(state)))
    assert extra["audit"]["state"] in ("clean", "checking")
    # a trial page: config, parent, attempts with failure messages
    failed = next(e for _, e, _ in counted_terminals(events[:half]) if isinstance(e, TrialFailed))
    code, html = get(server.url + f"/x/embedded/alpha/trial/{failed.trial}")
    assert code == 200 and f"Trial {failed.trial}" in html
    assert failed.message in html and failed.kind in html
    for k in events[0].space:  # type: ignore[union-attr]
        assert f"<th>{k}</th>" in html


def test_updates_are_pushed_as_the_log_grows(site):
    server, log_dir, events = site
    half = len(events) // 2
    _code, html = get(server.url + "/x/embedded/alpha")
    b = boot(html)
    stream = sse_updates(server.url + f"/x/embedded/alpha/stream?v={b['v']}&g={b['g']}&n={b['n']}")
    first = next(stream)  # the clock tick: runs in flight age
    assert first["points"] == [] and "progress" in first["html"] and "failures" not in first["html"]
    appended_at = time.monotonic()
    write(log_dir / "alpha.evoqlog", events[half:])
    ends = sum(1 for p in b["points"])
    for update in stream:
        if update["points"]:
            break
    latency = time.monotonic() - appended_at
    assert latency < 5, latency
    final = replay(events)
    new_ends = sum(
        1 for e in events[half:] if isinstance(e, TrialCompleted | TrialFailed)
    )  # an upper bound: duplicates do not count
    assert 0 < len(update["points"]) <= new_ends
    assert update["n"] == ends + len(update["points"])
    assert f'<span id="results">{final.results}</span>' in update["html"]["progress"]
    assert {"failures", "lineage", "population", "params"} <= set(update["html"])
    # a page loaded once all is folded carries every point: those encoded for the first page
    # (kept) and the new ones
    wait_for(lambda: json.loads(get(server.url + "/x/embedded/alpha/state.json")[1])["events"] == len(events))
    again = boot(get(server.url + "/x/embedded/alpha")[1])
    assert again["points"][: len(b["points"])] == b["points"]
    assert [p[0] for p in again["points"]] == [e.trial for _, e, _ in counted_terminals(events)]
    assert again["n"] == len(again["points"]) and again["g"] == b["g"]


def collect(url: str, into: list[dict]) -> threading.Thread:
    """Read a stream's updates into ``into`` on a daemon thread."""

    def read() -> None:
        with suppress(OSError):
            into.extend(sse_updates(url, timeout=60))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_a_trial_page_is_pushed_only_what_changes(site):
    """A trial's page is not re-rendered while the trial stays as served (a swap would blank it
    under a reader); a run in flight gets its result as soon as the log has it."""
    server, log_dir, events = site
    half = len(events) // 2
    terminals = counted_terminals(events)
    # a failed trial never changes again (``on_failure="ignore"``: it is no one's parent)
    completed = {e.trial for _, e, _ in terminals if isinstance(e, TrialCompleted)}
    done = min(e.trial for n, e, _ in terminals if n < half and e.trial not in completed)
    submitted = {e.trial for e in events[:half] if isinstance(e, TrialSubmitted)}
    later = {e.trial: e for n, e, _ in terminals if n >= half and isinstance(e, TrialCompleted)}
    running = min(t for t in later if t in submitted)
    quiet: list[dict] = []
    _code, html = get(server.url + f"/x/embedded/alpha/trial/{done}")
    collect(server.url + boot(html)["stream"], quiet)
    moving: list[dict] = []
    _code, html = get(server.url + f"/x/embedded/alpha/trial/{running}")
    assert "completed" not in html
    collect(server.url + boot(html)["stream"], moving)
    time.sleep(3.5)  # three ticks of the stream clock
    write(log_dir / "alpha.evoqlog", events[half:])
    wanted = metric_text(later[running].metric)
    wait_for(lambda: any(wanted in u["html"]["trial"] for u in moving), timeout=5, interval=0.05)
    time.sleep(1.5)
    assert quiet == []


def test_unknown_experiments_and_trials_are_404_with_a_message(site):
    server, _, _ = site
    code, html = get(server.url + "/x/embedded/nosuch")
    assert code == 404 and "no embedded experiment &#39;nosuch&#39;" in html
    code, html = get(server.url + "/x/redis/alpha")
    assert code == 404 and "shows no Redis" in html
    code, html = get(server.url + "/x/embedded/alpha/trial/99999")
    assert code == 404 and "has no trial 99999" in html
    for path in ("/trial/" + "9" * 5000, "/trial/" + "9" * 5000 + "/stream", "/trial/-1"):
        assert get(server.url + "/x/embedded/alpha" + path)[0] == 404  # was 500 past 4300 digits
    code, _ = get(server.url + "/x/embedded/..%2F..%2Fetc")
    assert code == 404


def test_a_loopback_dashboard_answers_only_to_local_host_names(site):
    server, _, _ = site
    assert get(server.url + "/", host=f"127.0.0.1:{server.port}")[0] == 200
    assert get(server.url + "/", host=f"localhost:{server.port}")[0] == 200
    code, _ = get(server.url + "/", host="attacker.example")  # DNS rebinding
    assert code == 400


def test_static_files_come_from_the_package_with_security_headers(site):
    server, _, _ = site
    with urlopen(server.url + "/vendor/plotly.min.js", timeout=30) as r:
        assert r.status == 200 and r.headers["Cache-Control"].endswith("immutable")
        assert b"plotly" in r.read(4096).lower()
    with urlopen(server.url + "/x/embedded/alpha", timeout=30) as r:
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
        html = r.read().decode()
    assert "http://" not in re.sub(
        r"https?://(127\.0\.0\.1|localhost)[^\"' ]*", "", html.split('id="boot"')[0]
    )


def test_the_dashboard_never_imports_trial_code(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    monkeypatch.setenv("EVOQ_TEST_MARKER", str(marker))
    had = "tests.import_marker" in sys.modules
    log_dir = tmp_path / ".evoq"
    events = experiment("marked", trial="tests.import_marker:train")
    write(log_dir / "marked.evoqlog", events)
    server = DashboardServer(Dashboard(None, log_dir), port=0).start()
    try:
        for path in (
            "/",
            "/x/embedded/marked",
            "/x/embedded/marked/state.json",
            "/x/embedded/marked/trial/0",
        ):
            assert get(server.url + path)[0] == 200
    finally:
        server.stop()
    assert not marker.exists()
    assert had or "tests.import_marker" not in sys.modules


def test_behind_a_reverse_proxy_links_carry_its_prefix(tmp_path):
    log_dir = tmp_path / ".evoq"
    write(log_dir / "alpha.evoqlog", experiment("alpha"))
    server = DashboardServer(Dashboard(None, log_dir), port=0, root_path="/evoq/").start()
    try:
        code, html = get(server.url + "/")  # the proxy strips its prefix
        assert code == 200 and 'href="/evoq/x/embedded/alpha"' in html
        code, html = get(server.url + "/x/embedded/alpha")
        assert (
            code == 200
            and 'href="/evoq/static/dashboard.css' in html
            and 'src="/evoq/vendor/plotly.min.js' in html
        )
        assert boot(html)["stream"] == "/evoq/x/embedded/alpha/stream"
    finally:
        server.stop()


def test_a_public_address_needs_the_explicit_flag_and_a_busy_port_is_refused(tmp_path):
    with pytest.raises(DashboardError, match="i-know-this-is-public"):
        DashboardServer(Dashboard(None, tmp_path), host="0.0.0.0", port=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} on 127.0.0.1 is in use"):
            DashboardServer(Dashboard(None, tmp_path), port=port)


def test_cli_errors_are_one_line(tmp_path):
    one_line_error(evoq("dashboard", "nosuch", cwd=tmp_path), "no embedded experiment 'nosuch'")
    one_line_error(evoq("dashboard", "--host", "0.0.0.0", cwd=tmp_path), "--i-know-this-is-public")
    one_line_error(
        evoq("dashboard", "--redis-url", "redis://127.0.0.1:1/0", cwd=tmp_path), "cannot reach Redis"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        one_line_error(evoq("dashboard", "--port", str(port), cwd=tmp_path), f"port {port}", "in use")
        spec = write_spec(tmp_path / "busy.toml", "busy", "tests.trials:quick", {"x": [0, 1, 2]}, cycles=3)
        one_line_error(
            evoq("run", str(spec), "--dashboard", str(port), cwd=tmp_path), f"port {port}", "in use"
        )


DASHBOARD_ACL = "on >dash-pw ~evoq:* ~rq:* resetchannels -@all +@read +ping +hello"
"""What the README tells to give the dashboard's Redis user: reading evoq's and RQ's keys."""


def test_the_dashboard_works_with_a_redis_user_that_can_only_read(tmp_path):
    server = RedisServer(tmp_path)
    worker = Worker(server.url, f"reader-test-{time.monotonic_ns()}", EVOQ_TEST_SLEEP="0.5")
    spec = write_spec(
        tmp_path / "ro.toml", "ro", "tests.trials:sometimes", "x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = [0, 1, 2, 3]",
        population_size=4, sample_size=2, cycles=12,
    )  # fmt: skip
    ctl = controller(spec, server.url)
    dash = None
    try:
        server.client().execute_command("ACL", "SETUSER", "evoq-dashboard", *DASHBOARD_ACL.split())
        url = server.url.replace("redis://", "redis://evoq-dashboard:dash-pw@")
        client = connect(url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("evoq:{ro}:probe", "1")  # the user really cannot write
        wait_for(lambda: client.exists("evoq:{ro}:events"), timeout=60)
        dash = DashboardServer(Dashboard(client, tmp_path / ".evoq"), port=0).start()
        code, html = get(dash.url + "/")
        assert code == 200 and "/x/redis/ro" in html and "cannot list" not in html
        code, html = get(dash.url + "/x/redis/ro")
        assert code == 200, html
        b = boot(html)
        seen_worker = seen_heartbeat = False
        for update in sse_updates(
            dash.url + f"/x/redis/ro/stream?v={b['v']}&g={b['g']}&n={b['n']}", timeout=60
        ):
            html_parts = "".join(update["html"].values())
            assert "NOPERM" not in html_parts and "cannot read" not in html_parts, html_parts
            seen_worker |= worker.name in update["html"].get("workers", "")
            seen_heartbeat |= "s ago" in update["html"].get("running", "")
            if seen_worker and seen_heartbeat:
                break
        assert ctl.wait(timeout=120) == 0
        code, text = get(dash.url + "/x/redis/ro/state.json")
        assert json.loads(text)["results"] == 12
        code, html = get(dash.url + "/x/redis/ro/trial/0")
        assert code == 200 and "Trial 0" in html
    finally:
        if dash is not None:
            dash.stop()
        if ctl.poll() is None:
            ctl.kill()
        worker.stop()
        server.stop()


def test_redis_going_away_is_said_on_the_page(tmp_path):
    server = RedisServer(tmp_path)
    dash = DashboardServer(Dashboard(connect(server.url), tmp_path / ".evoq"), port=0).start()
    try:
        server.stop()
        code, html = get(dash.url + "/x/redis/gone")
        assert code == 503 and "cannot reach Redis" in html
        code, html = get(dash.url + "/")
        assert code == 200 and "cannot list the experiments" in html
    finally:
        dash.stop()
