"""Hostile input met through the command line: foreign data under evoq's keys, bad spec shapes,
the codec fuzzer."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import msgpack
import pytest

from evoq.codec import SCHEMA_VERSION, encode
from evoq.dashboard import Dashboard
from evoq.dashboard.server import DashboardServer
from evoq.events import Event, TrialCompleted, TrialFailed, TrialProgressed, TrialStarted
from evoq.filelog import FileLog
from evoq.reducer import replay
from evoq.strategy import Strategy

from ..cluster import RedisServer, evoq, one_line_error, write_spec
from ..sim import simulate


def test_foreign_contents_under_evoq_keys(tmp_path):
    server = RedisServer(tmp_path)
    try:
        spec = write_spec(
            tmp_path / "s.toml",
            "x",
            "tests.trials:quick",
            "a = [1, 2]",
            population_size=2,
            sample_size=1,
            cycles=2,
        )
        client = server.client()
        client.set("evoq:{x}:events", "not a stream")
        one_line_error(
            evoq("run", str(spec), "--redis-url", server.url, "--no-progress", cwd=tmp_path),
            "Redis refused",
            "WRONGTYPE",
        )
        one_line_error(evoq("status", "x", "--redis-url", server.url, cwd=tmp_path), "Redis refused")
        client.delete("evoq:{x}:events")
        client.xadd("evoq:{x}:events", {"e": b"\x93garbage"})
        one_line_error(
            evoq("run", str(spec), "--redis-url", server.url, "--no-progress", cwd=tmp_path),
            "no readable experiment_created record",
            "not a msgpack record",
        )
        client.delete("evoq:{x}:events")
        client.xadd("evoq:{x}:events", {"e": msgpack.packb(["experiment_created", SCHEMA_VERSION + 1, "x"])})
        proc = evoq("run", str(spec), "--redis-url", server.url, "--no-progress", cwd=tmp_path)
        one_line_error(proc, "newer", "upgrade evoq")
        assert client.xlen("evoq:{x}:events") == 1  # nothing already logged was lost or changed
        client.delete("evoq:{x}:events")
        client.xadd("evoq:{x}:events", {"e": encode(TrialStarted(0, 0, "w", 0.0))})
        one_line_error(
            evoq("run", str(spec), "--redis-url", server.url, "--no-progress", cwd=tmp_path),
            "experiment_created",
        )
    finally:
        server.stop()


@pytest.mark.parametrize("content", ["strategy = 3", "space = 5", "seed = -1", "seed = 'x'", "name = 7"])
def test_more_bad_spec_shapes(tmp_path, content):
    key, value = content.split(" = ")
    top = {"name": "'x'", "trial": "'tests.trials:quick'", "seed": "0", key: value}
    lines = [f"{k} = {v}" for k, v in top.items()]
    if key != "space":
        lines.append("[space]\na = [1]")
    (tmp_path / "s.toml").write_text("\n".join(lines) + "\n")
    one_line_error(evoq("run", "s.toml", "--no-progress", cwd=tmp_path), key)


def test_fuzz_script_runs_clean():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / "fuzz_codec.py"), "--inputs", "20000", "--seed", "7"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("inputs=20000 untyped=0")


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[8mALL GOOD\x9b31m\u202e"


def forged_log(path: Path) -> list[Event]:
    """An experiment whose records carry what a stranger may write: times that are not finite or
    that no clock shows, a NaN progress value for a run in flight, terminal escape sequences in
    worker names and failure messages."""
    strategy = Strategy(population_size=4, sample_size=2, cycles=400, max_failures=100)
    events = simulate(random.Random(3), strategy, steps=60, fail_rate=0.3, progress_rate=0.3)
    created = dataclasses.replace(events[0], name="forged")  # type: ignore[type-var]
    odd = [math.inf, -math.inf, math.nan, 1e300, -1e300, 1e18]
    out: list[Event] = [created]
    for i, e in enumerate(events[1:]):
        if isinstance(e, TrialStarted | TrialCompleted | TrialFailed | TrialProgressed) and i % 3 == 0:
            e = dataclasses.replace(e, at=odd[i % len(odd)])
        if isinstance(e, TrialCompleted | TrialFailed | TrialStarted) and i % 4 == 0:
            e = dataclasses.replace(e, worker=f"w{ESCAPES}")
        if isinstance(e, TrialFailed):
            e = dataclasses.replace(e, message=f"boom {ESCAPES}\nsecond line")
        out.append(e)
    running = replay(out).running
    trial = min(running)
    out.append(TrialProgressed(trial, running[trial].attempt, 3, math.nan, math.nan))
    FileLog(path).append([encode(e) for e in out])
    return out


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_forged_times_values_and_escapes_are_shown_not_raised_or_played(tmp_path):
    """Found by an attack review: a NaN progress value crashed `evoq status`, an infinite time
    made the dashboard answer 500, `--json` printed NaN (no JSON parser reads it), and escape
    sequences in a worker name set the operator's terminal title and hid text."""
    forged_log(tmp_path / ".evoq" / "forged.evoqlog")
    for args in (("status", "forged"), ("trials", "forged"), ("trials", "forged", "--csv"), ("top", "forged"),
                 ("lineage", "forged"), ("list",)):  # fmt: skip
        proc = evoq(*args, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        shown = proc.stdout + proc.stderr
        assert not any(c in shown for c in "\x1b\x07\x9b\u202e"), (args, shown[:400])
    assert "\\x1b]0;owned" in evoq("status", "forged", cwd=tmp_path).stdout  # shown, escaped
    for args in (("status", "forged", "--json"), ("trials", "forged", "--json"), ("top", "forged", "--json")):
        proc = evoq(*args, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        strict_json(proc.stdout)
    server = DashboardServer(Dashboard(None, tmp_path / ".evoq"), port=0).start()
    try:
        status, text = get(server.url + "/x/embedded/forged/state.json")
        assert status == 200, text[:300]
        data = strict_json(text)
        for t in range(data["results"] + len(data["in_flight"])):
            code, page = get(server.url + f"/x/embedded/forged/trial/{t}")
            assert code in (200, 404) and "\x1b" not in page, (t, page[:300])
        code, page = get(server.url + "/x/embedded/forged")
        assert code == 200, page[:300]
        boot = re.search(r'<script type="application/json" id="boot">(.*?)</script>', page, re.S)
        assert boot is not None
        strict_json(boot.group(1))
    finally:
        server.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except HTTPError as exc:
        return exc.code, exc.read().decode()


def test_deep_or_swollen_records_are_rejected_not_recursed_or_held(tmp_path):
    """A space nested hundreds of levels deep made every reader die in RecursionError; a 1 MiB
    config of a million empty maps took about 70 times its size in memory in `status`. Records
    deeper than MAX_DEPTH or holding more than MAX_ITEMS values are rejected records."""
    from evoq.codec import MAX_DEPTH, MAX_ITEMS, SCHEMA_VERSION

    deep: Any = 1
    for _ in range(400):
        deep = [deep]
    space = {"x": {"_type": "choice", "_value": [deep, 2]}}
    created = [
        "experiment_created",
        SCHEMA_VERSION,
        "deep",
        space,
        Strategy(cycles=10).to_dict(),
        0,
        "m:f",
        "t",
        1.0,
    ]
    deep_log = tmp_path / "deep.evoqlog"
    FileLog(deep_log).append([msgpack.packb(created)])
    for command in ("status", "audit", "replay", "trials", "top", "lineage"):
        proc = evoq(command, str(deep_log), cwd=tmp_path)
        assert "Traceback" not in proc.stderr and proc.returncode in (0, 1, 2), (command, proc.stderr)
    one_line_error(evoq("status", str(deep_log), cwd=tmp_path), f"nested deeper than {MAX_DEPTH}")

    ok = [
        "experiment_created",
        SCHEMA_VERSION,
        "swollen",
        {"x": [1, 2]},
        Strategy(cycles=10).to_dict(),
        0,
        "m:f",
        "t",
        1.0,
    ]
    swollen = ["trial_submitted", SCHEMA_VERSION, 0, 0, {"x": [{}] * (MAX_ITEMS + 1)}, None, "init", "", 2.0]
    log = tmp_path / "swollen.evoqlog"
    FileLog(log).append([msgpack.packb(ok), msgpack.packb(swollen)])
    proc = evoq("status", str(log), cwd=tmp_path)
    assert proc.returncode == 0 and f"more than {MAX_ITEMS} maps and arrays" in proc.stdout, (
        proc.stdout + proc.stderr
    )
