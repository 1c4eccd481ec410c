#!/usr/bin/env python3
"""Regenerate the README's screenshot: the dashboard during a live run.

Starts a real ``redis-server`` on a free loopback port, ``--workers`` real ``rq worker``
processes named like GPU boxes, ``evoq run`` (the controller) on a spec whose trial is
``evoq.examples.chaos:trial`` (mostly healthy trials taking 0.8-3 s, some raising or
returning NaN, so that failures show), and ``evoq dashboard``, all as a user would; once the
experiment has ``--results`` results, headless Chromium opens the experiment's page and saves a
full-page PNG to ``--out`` (default ``evoq/dashboard/screenshot.png``). Everything started is
stopped at the end.

Needs redis-server, chromium and chromium-driver (Debian packages; ``scripts/test`` installs
them) and the dev extra (Selenium).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

from evoq.testing import LocalRedis, WorkerProcess, chromium, free_port, wait_for, write_spec

ROOT = Path(__file__).resolve().parent.parent
SPACE = """mode = ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "raise", "nan"]
sleep = { _type = "uniform", _value = [0.8, 3.0] }
x = { _type = "uniform", _value = [0, 1] }
depth = [2, 4, 8, 16]
optimizer = ["sgd", "adam", "adamw"]"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "evoq" / "dashboard" / "screenshot.png")
    ap.add_argument("--results", type=int, default=70, help="results before the shot (default 70)")
    ap.add_argument("--workers", type=int, default=3, help="rq worker processes (default 3)")
    ap.add_argument("--width", type=int, default=1400, help="browser width in pixels (default 1400)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = LocalRedis(folder)
        spec = write_spec(
            folder / "resnet-search.toml", "resnet-search", "evoq.examples.chaos:trial", SPACE,
            seed=1, population_size=20, sample_size=5, cycles=300, mutation_prob=0.3,
        )  # fmt: skip
        env = {**os.environ, "EVOQ_ALLOW": "evoq.examples.chaos:trial"}
        workers = [
            WorkerProcess(server.url, f"gpu-box{1 + i // 2}-{i % 2}", env=env, cwd=folder, monitoring=5)
            for i in range(args.workers)
        ]
        evoq = [sys.executable, "-m", "evoq.cli"]
        controller = subprocess.Popen(
            [*evoq, "run", str(spec), "--redis-url", server.url, "--no-progress"],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port = free_port()
        dashboard = subprocess.Popen(
            [*evoq, "dashboard", "--redis-url", server.url, "--port", str(port)],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/x/redis/resnet-search"
        browser = None
        try:

            def results() -> int:
                try:
                    with urlopen(url + "/state.json", timeout=10) as r:
                        n: int = json.load(r)["results"]
                        return n
                except OSError:
                    return 0

            wait_for(lambda: results() >= args.results, timeout=600, interval=0.5)
            browser = chromium(args.width, 1000)
            browser.get(url)
            wait_for(lambda: browser.execute_script("return document.body.dataset.charts"), timeout=60)
            time.sleep(1.5)  # one more push: elapsed times, heartbeats
            height = browser.execute_script("return document.documentElement.scrollHeight")
            chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
            browser.set_window_size(args.width, height + chrome)  # the viewport holds the whole page
            time.sleep(1.0)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.out))
            print(f"wrote {args.out} ({args.width}x{height}) at {results()} results")
        finally:
            if browser is not None:
                browser.quit()
            for proc in (dashboard, controller):
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for w in workers:
                w.stop()
            server.stop()


if __name__ == "__main__":
    main()
