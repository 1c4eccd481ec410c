"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, Selenium).

A run on a real redis-server with real `rq worker` processes, watched through `evoq dashboard`;
and an embedded run serving its own dashboard (`evoq run SPEC --dashboard PORT`). In both,
results appear and update live (no page reload), the charts grow, runs in flight show their
worker and heartbeat, a failure message shows, and a trial's page opens.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By

from evoq.testing import free_port

from ..cluster import RedisServer, Worker, browser, controller, wait_for, worker_env, write_spec

SPACE = "x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = [0, 1, 2, 3, 4, 5, 6, 7]"
FAILURE = "CUDA out of memory (simulated)"


@pytest.fixture
def chrome() -> Any:
    driver = browser()
    yield driver
    driver.quit()


def text(driver: Any, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def results(driver: Any) -> int:
    value = text(driver, "#results")
    return int(value) if value.isdigit() else -1


def drawn(driver: Any, chart: str) -> int:
    """Points drawn in a chart's result trace (0 before Plotly drew it)."""
    n = driver.execute_script(
        "const el = document.getElementById(arguments[0]);return el && el.data ? el.data[0].x.length : 0;",
        chart,
    )
    return int(n)


def answers(url: str) -> bool:
    try:
        with urlopen(url, timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def until(driver: Any, predicate: Any, what: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """``wait_for`` that says what it waited for and what the page showed when it gave up."""
    try:
        return wait_for(predicate, timeout=timeout, interval=interval)
    except TimeoutError:
        shown = {
            css: text(driver, css)[:400] for css in ("#live", "#progress", "#running", "#failures", "h1")
        }
        raise AssertionError(
            f"{what}: not seen in {timeout}s at {driver.current_url}; page: {shown}"
        ) from None


def mark_page(driver: Any) -> None:
    """Leave a marker in the page: a reload or navigation would drop it."""
    driver.execute_script("window.__evoqSamePage = true;")


def same_page(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__evoqSamePage === true;"))


def no_console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def follow_first(driver: Any, css: str) -> str | None:
    """Click the first link matching ``css`` and return its last word; None when the list was
    being replaced under the click (try again)."""
    try:
        link = driver.find_element(By.CSS_SELECTOR, css)
        words = str(link.text).split()
        if not words:
            return None
        link.click()
    except (NoSuchElementException, StaleElementReferenceException):
        return None
    return words[-1]


def check_live_page(driver: Any, url: str, worker_names: list[str]) -> None:
    """The experiment page at ``url``: live results, charts, runs in flight, a failure, a trial page."""
    driver.get(url)
    until(
        driver,
        lambda: drawn(driver, "chart-trial") > 0 and drawn(driver, "chart-time") > 0,
        "charts drawn",
        90,
    )
    mark_page(driver)
    first, first_points = results(driver), drawn(driver, "chart-trial")
    until(driver, lambda: results(driver) >= first + 3, f"results going from {first} to {first + 3}", 120)
    until(driver, lambda: drawn(driver, "chart-trial") > first_points, "the charts growing", 30)
    assert same_page(driver), "the page reloaded"
    # a run in flight on one of the workers, with its heartbeat's age
    until(
        driver,
        lambda: (
            "s ago" in text(driver, "#running") and any(n in text(driver, "#running") for n in worker_names)
        ),
        f"a run on one of {worker_names} with its heartbeat",
        90,
    )
    # live fragments are replaced as events arrive: read them with ``until``, never once
    until(driver, lambda: any(n in text(driver, "#workers") for n in worker_names), "the workers listed", 30)
    # a failure and its message
    until(driver, lambda: FAILURE in text(driver, "#failures"), "a failure message", 120)
    assert same_page(driver)
    until(driver, lambda: "error" in text(driver, "#failures .kinds"), "failures counted by kind", 30)
    trial = until(
        driver, lambda: follow_first(driver, "#failures li.failure summary a"), "a failure's link", 30
    )
    until(driver, lambda: f"Trial {trial}" in text(driver, "h1"), f"the page of trial {trial}", 30)
    # the trial's page is live too: read it with ``until``
    until(
        driver,
        lambda: FAILURE in text(driver, "#trial") and "failed:error" in text(driver, "#trial"),
        f"trial {trial}'s failure message and status",
        30,
    )
    until(
        driver,
        lambda: any(f"x {v}" in text(driver, "#trial table.params") for v in (0, 1)),
        f"trial {trial}'s config, with x below 2",
        30,
    )
    assert driver.current_url.endswith(f"/trial/{trial}")
    driver.back()
    until(driver, lambda: drawn(driver, "chart-trial") > 0, "the experiment's page again", 60)


def test_a_run_on_redis_with_rq_workers_shows_live(tmp_path: Path, chrome: Any) -> None:
    server = RedisServer(tmp_path)
    workers = [Worker(server.url, f"gpu{i}-{time.monotonic_ns()}", EVOQ_TEST_SLEEP="1.0") for i in range(2)]
    port = free_port()
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "evoq.cli", "dashboard", "--redis-url", server.url, "--port", str(port)],
        cwd=tmp_path, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    ctl = None
    try:
        wait_for(lambda: answers(base + "/"), timeout=60, interval=0.1)
        chrome.get(base + "/")
        assert "No experiments yet" in text(chrome, "#experiments")
        mark_page(chrome)
        spec = write_spec(
            tmp_path / "live.toml",
            "live",
            "tests.trials:sometimes",
            SPACE,
            population_size=6,
            sample_size=2,
            cycles=40,
        )
        ctl = controller(spec, server.url)
        # the list follows: the new experiment appears without a reload
        until(chrome, lambda: "live" in text(chrome, "#experiments table"), "the new experiment listed", 60)
        assert same_page(chrome)
        chrome.find_element(By.CSS_SELECTOR, 'a[href$="/x/redis/live"]').click()
        check_live_page(chrome, chrome.current_url, [w.name for w in workers])
        mark_page(chrome)
        # the end of the run shows too: completed, every result in, the audit clean
        until(chrome, lambda: text(chrome, "#status") == "completed", "the run completed", 180)
        until(chrome, lambda: results(chrome) == 40, "40 results", 30)
        until(chrome, lambda: text(chrome, "#audit-state").startswith("clean"), "a clean audit", 60)
        assert same_page(chrome)
        assert ctl.wait(timeout=60) == 0
        params = text(chrome, "#params")
        assert "population size P 6" in params and "sample size S 2" in params and "seed 3" in params
        assert no_console_errors(chrome) == []
    finally:
        if ctl is not None and ctl.poll() is None:
            ctl.kill()
        dashboard.terminate()
        _, err = dashboard.communicate(timeout=30)
        for w in workers:
            w.stop()
        server.stop()
    assert "Traceback" not in err, err


def test_an_embedded_run_serves_its_own_live_dashboard(tmp_path: Path, chrome: Any) -> None:
    spec = write_spec(
        tmp_path / "emb.toml",
        "emb",
        "tests.trials:sometimes",
        SPACE,
        population_size=6,
        sample_size=2,
        cycles=200,
    )
    port = free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "evoq.cli", "run", str(spec), "--no-progress", "--workers", "2", "--dashboard", str(port)],
        cwd=tmp_path, env=worker_env(EVOQ_TEST_SLEEP="0.4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/x/embedded/emb"  # the run goes on until interrupted below
    try:
        wait_for(lambda: answers(url), timeout=90, interval=0.1)
        # heartbeats and worker threads come from the run's in-process Redis
        check_live_page(chrome, url, ["evoq-embedded-0", "evoq-embedded-1"])
        assert "evoq-embedded-0" in text(chrome, "#workers") and "evoq-embedded-1" in text(chrome, "#workers")
        assert text(chrome, "#status") == "running"
        assert "verified" in text(chrome, "#audit")  # the embedded log's hash chain
        assert no_console_errors(chrome) == []
    finally:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=90)
    assert f"dashboard on http://127.0.0.1:{port}/x/embedded/emb" in err
    assert run.returncode in (0, 130) and "Traceback" not in err, err
