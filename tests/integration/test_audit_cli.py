"""`evoq audit` and `evoq export` on real runs, and audits of a real Redis stream."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

from evoq.audit import audit_entries
from evoq.codec import encode
from evoq.strategy import Strategy

from ..cluster import RedisServer, worker_env
from ..sim import simulate


def test_audit_of_real_runs(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(
        "name='aud'\ntrial='tests.trials:quick'\n[strategy]\npopulation_size=5\nsample_size=2\ncycles=25\n"
        "[space]\nx=[0,1,2,3,4,5,6,7]\ny={_type='uniform', _value=[0,1]}\n"
    )
    cmd = [sys.executable, "-m", "evoq.cli"]
    assert (
        subprocess.run(
            [*cmd, "run", str(spec), "--workers", "2", "--no-progress"],
            cwd=tmp_path,
            env=worker_env(),
            capture_output=True,
        ).returncode
        == 0
    )
    out = tmp_path / "aud.evoqlog"
    assert (
        subprocess.run(
            [*cmd, "export", "aud", "-o", str(out)], cwd=tmp_path, env=worker_env(), capture_output=True
        ).returncode
        == 0
    )
    proc = subprocess.run(
        [*cmd, "audit", str(out), "--json"], cwd=tmp_path, env=worker_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    assert report["ok"] and report["decisions_checked"] >= 25
    shutil.copy(out, tmp_path / "bad.evoqlog")
    data = bytearray((tmp_path / "bad.evoqlog").read_bytes())
    data[200] ^= 0x10
    (tmp_path / "bad.evoqlog").write_bytes(bytes(data))
    proc = subprocess.run(
        [*cmd, "audit", str(tmp_path / "bad.evoqlog")],
        cwd=tmp_path,
        env=worker_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "FAIL record" in proc.stdout and "hash chain broken" in proc.stdout


def test_audit_of_a_redis_stream(tmp_path):
    server = RedisServer(tmp_path)
    try:
        from evoq.keys import Keys
        from evoq.redislog import RedisLog

        log = RedisLog(server.client(), Keys("s"))
        events = simulate(random.Random(8), Strategy(population_size=5, sample_size=2, cycles=20), steps=200)
        log.append([encode(e) for e in events])
        rep = audit_entries(log.read())
        assert rep.ok and rep.decisions_checked >= 20
    finally:
        server.stop()
