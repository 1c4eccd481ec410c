"""Hostile input met through the command line: foreign data under evoq's keys, bad spec shapes,
the codec fuzzer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from evoq.codec import SCHEMA_VERSION, encode
from evoq.events import TrialStarted

from ..cluster import RedisServer, evoq, one_line_error, write_spec


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
