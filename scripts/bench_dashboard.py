#!/usr/bin/env python3
"""How the dashboard holds up on a 100k-event experiment, with two browsers open.

Builds a log of ``--events`` events with evoq's own proposals (``bench_replay.build_log``: P=100,
S=25, 20% of trials failing, 8 in flight), then for each backend:

* ``redis``: the log in a real redis-server's stream, its controller's lease held (a run going
  on), followed by ``evoq dashboard --redis-url`` with ``XREAD BLOCK``;
* ``file``: the log as an embedded experiment's file in ``.evoq/``, its lock held (an embedded
  run going on), followed by ``evoq dashboard`` watching the file grow.

``evoq dashboard`` runs as a subprocess, as a user starts it, and two headless Chromium browsers
open the experiment's page. Figures (medians over the runs, and the worst run):

* ``ready_s``: from starting ``evoq dashboard`` to its first answer with the whole log folded
  (process start, one read and fold of the log);
* ``first_paint_ms``: navigation start to first contentful paint — the page's numbers and
  tables, server-rendered from the fold — in one browser while the other one is open and live;
  ``charts_ms``: to the two charts with every result on screen (the frame after drawing them
  painted; before 2026-11-30 this was taken before that paint). The first visit of each browser
  (an empty cache: Plotly's 4.8 MB bundle is fetched) is reported apart (``first_visit_*``);
* ``event_visible_ms``: from just before a new event is appended (a trial's start and result,
  and the next submission, as worker and controller write them) to the page showing it, in each
  of the two browsers (a ``requestAnimationFrame`` after the new count is in the page);
  ``chart_updated_ms``: to the charts holding the new point.

Needs redis-server, chromium and chromium-driver (Debian packages; ``scripts/test`` installs
them) and the dev extra (Selenium).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_replay import build_log

from evoq.codec import encode
from evoq.embedded import experiment_lock, lock_path
from evoq.events import Event, TrialCompleted, TrialStarted, TrialSubmitted
from evoq.filelog import FileLog
from evoq.keys import EXPERIMENTS, Keys
from evoq.log import replay_log
from evoq.proposal import propose
from evoq.redislog import RedisLog
from evoq.reducer import StateBuilder
from evoq.testing import LocalRedis, chromium, free_port, wait_for

NAME = "bench"
OBSERVE = """
window.__seen = [];
const body = document.body;
new MutationObserver(() => {
  const n = Number(body.dataset.n || 0), c = Number(body.dataset.charts || 0);
  requestAnimationFrame(() => window.__seen.push([n, c, Date.now()]));
}).observe(body, {attributes: true, attributeFilter: ["data-n", "data-charts"]});
"""


class Writer:
    """Appends what a worker and the controller would: a run's start and result, the next
    submission (evoq's own proposal), to the log the dashboard follows."""

    def __init__(self, b: StateBuilder, append: Any) -> None:
        self.b, self.append = b, append
        self.rng = random.Random(1)

    def step(self) -> None:
        b = self.b
        trial = min(b.running)
        run = b.running[trial]
        now = time.time()
        events: list[Event] = [
            TrialStarted(trial, run.attempt, "bench-worker", now - 1.0),
            TrialCompleted(
                trial, run.attempt, sum(run.config.values()) + self.rng.random(), 1.0, "bench-worker", now
            ),
        ]
        for e in events:
            b.add(e)
        p = propose(b)
        if p is not None:
            sub = TrialSubmitted(p.trial, p.attempt, p.config, p.parent, p.phase, p.note, now)
            b.add(sub)
            events.append(sub)
        self.append([encode(e) for e in events])


def seen_both(browser: Any, events: int, charts: int) -> list[list[float]] | None:
    """The page's observations once it has shown ``events`` events and drawn ``charts`` times."""
    seen: list[list[float]] = browser.execute_script("return window.__seen") or []
    if any(x[0] >= events for x in seen) and any(x[1] >= charts for x in seen):
        return seen
    return None


def median_max(values: list[float]) -> str:
    return f"median={statistics.median(values):.0f} max={max(values):.0f} n={len(values)}"


def page_load(driver: Any, url: str) -> tuple[float, float]:
    """Navigate; return (first contentful paint, charts drawn) in ms since navigation start."""
    driver.get(url)
    charts = wait_for(lambda: driver.execute_script("return document.body.dataset.chartsMs"), timeout=60)
    fcp = wait_for(
        lambda: driver.execute_script(
            "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null;"
        ),
        timeout=10,
    )
    return float(fcp), float(charts)


def bench_backend(kind: str, log: Path, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        b = replay_log(FileLog(log))
        cmd = [sys.executable, "-m", "evoq.cli", "dashboard"]
        if kind == "redis":
            server = LocalRedis(folder)
            stack.callback(server.stop)
            client = server.client()
            stream = RedisLog(client, Keys(NAME))
            batch: list[bytes] = []
            for _, data in FileLog(log).read():
                batch.append(data)
                if len(batch) == 1000:
                    stream.append(batch)
                    batch = []
            stream.append(batch)
            client.sadd(EXPERIMENTS, NAME)
            client.set(Keys(NAME).lease, "1:bench-controller", px=3_600_000)  # a controller is running
            cmd += ["--redis-url", server.url]

            def append(records: list[bytes]) -> None:
                stream.append(records)

            where = "redis"
        else:
            embedded = folder / ".evoq" / f"{NAME}.evoqlog"
            embedded.parent.mkdir(parents=True)
            embedded.write_bytes(log.read_bytes())
            stack.enter_context(experiment_lock(lock_path(embedded), NAME, wait=False, notify=print))
            file = FileLog(embedded)

            def append(records: list[bytes]) -> None:
                file.append(records)

            where = "embedded"
        port = free_port()
        url = f"http://127.0.0.1:{port}/x/{where}/{NAME}"
        started = time.perf_counter()
        dash = subprocess.Popen(
            [*cmd, "--port", str(port)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        stack.callback(dash.wait, 30)
        stack.callback(dash.terminate)

        def folded() -> bool:
            try:
                with urlopen(url + "/state.json", timeout=30) as r:
                    return bool(json.load(r)["events"] == b.events)
            except OSError:
                return False

        wait_for(folded, timeout=120, interval=0.05)
        out["ready_s"] = time.perf_counter() - started
        browsers = [chromium(1400, 1000) for _ in range(2)]
        for br in browsers:
            stack.callback(br.quit)
        first = [page_load(br, url) for br in browsers]  # empty caches
        out["first_visit_first_paint_ms"] = [f[0] for f in first]
        out["first_visit_charts_ms"] = [f[1] for f in first]
        paints, charts = [], []
        for run in range(args.runs):
            for i in (0, 1):  # the other browser stays on the page, live
                fcp, drawn = page_load(browsers[i], url)
                paints.append(fcp)
                charts.append(drawn)
            del run
        out["first_paint_ms"], out["charts_ms"] = paints, charts
        # new events: append, then wait until both pages show them
        writer = Writer(b, append)
        for br in browsers:
            br.execute_script(OBSERVE)
        n0 = [int(br.execute_script("return Number(document.body.dataset.n)")) for br in browsers]
        c0 = [int(br.execute_script("return Number(document.body.dataset.charts)")) for br in browsers]
        visible, chart_updated = [], []
        for k in range(1, args.appends + 1):
            time.sleep(random.uniform(0.2, 0.7))  # not in step with the pages' 1 s clock
            t0 = time.time() * 1000
            writer.step()
            for br, n, c in zip(browsers, n0, c0, strict=True):
                seen = wait_for(functools.partial(seen_both, br, n + k, c + k), timeout=30, interval=0.02)
                visible.append(min(x[2] for x in seen if x[0] >= n + k) - t0)
                chart_updated.append(min(x[2] for x in seen if x[1] >= c + k) - t0)
        out["event_visible_ms"], out["chart_updated_ms"] = visible, chart_updated
        severe = [e["message"] for br in browsers for e in br.get_log("browser") if e["level"] == "SEVERE"]
        out["console_errors"] = severe
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events in the log (default 100,000)")
    ap.add_argument("--runs", type=int, default=5, help="page loads per browser (default 5)")
    ap.add_argument(
        "--appends", type=int, default=20, help="new events appended while both pages watch (default 20)"
    )
    ap.add_argument("--backends", default="redis,file", help="comma-separated: redis, file (default both)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "source.evoqlog"
        t0 = time.perf_counter()
        count = build_log(log, args.events, t0=time.time() - args.events / 3)
        trials = replay_log(FileLog(log)).next_trial
        print(f"# built {count} events ({trials} trials) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        print(f"events={count} trials={trials} browsers=2 runs={args.runs} appends={args.appends}")
        for kind in args.backends.split(","):
            folder = Path(tmp) / kind
            folder.mkdir()
            r = bench_backend(kind, log, folder, args)
            print(f"{kind}: ready_s={r['ready_s']:.2f}")
            print(f"{kind}: first_visit_first_paint_ms={','.join(f'{v:.0f}' for v in r['first_visit_first_paint_ms'])}"
                  f" first_visit_charts_ms={','.join(f'{v:.0f}' for v in r['first_visit_charts_ms'])}")  # fmt: skip
            for key in ("first_paint_ms", "charts_ms", "event_visible_ms", "chart_updated_ms"):
                print(f"{kind}: {key} {median_max(r[key])}")
            if r["console_errors"]:
                print(f"{kind}: console errors: {r['console_errors'][:3]}")


if __name__ == "__main__":
    main()
