"""The fault campaign (``scripts/fault_campaign.py``) on a couple of schedules, as a subprocess.

Real redis-server, real ``rq worker`` processes and real ``evoq run`` controllers, with random
faults (controller/worker/horse kills, Redis restarts, duplicate deliveries, misbehaving
trials): the campaign must end with no violation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evoq.examples.chaos import EXPECTED_FAILURE, ChaosError, trial

from ..cluster import ROOT, redis_binary

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "fault_campaign.py"


def test_chaos_trial_misbehaves_as_its_config_says() -> None:
    """Each mode does what it promises (no sleeping: ``sleep`` is 0)."""
    assert trial({"mode": "ok", "sleep": 0, "x": 3}) == 3.0
    with pytest.raises(ChaosError):
        trial({"mode": "raise", "sleep": 0})
    assert trial({"mode": "nan", "sleep": 0}) != trial({"mode": "nan", "sleep": 0})
    assert trial({"mode": "inf", "sleep": 0}) == float("inf")
    assert trial({"mode": "none", "sleep": 0}) is None
    assert isinstance(trial({"mode": "string", "sleep": 0}), str)
    with pytest.raises(ValueError, match="unknown chaos mode"):
        trial({"mode": "explode", "sleep": 0})
    assert set(EXPECTED_FAILURE) >= {"ok", "raise", "nan", "inf", "none", "string", "hang"}


def test_script_help() -> None:
    """``--help`` works and names the options."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--schedules" in done.stdout and "--seed" in done.stdout and "--out" in done.stdout


def test_two_schedules_have_no_violation(tmp_path: Path) -> None:
    """Two fault schedules end with exit 0, the summary line last, and a clean JSON summary."""
    redis_binary()  # skips (or fails on CI) without a redis-server
    out = tmp_path / "campaign"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--schedules", "2", "--seed", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert lines and lines[-1].startswith("schedules=2 faults=") and lines[-1].endswith(" violations=0")
    data = json.loads((out / "summary.json").read_text())
    assert data["schedules"] == 2 and data["violations"] == 0
    assert data["faults"] > 0 and data["injected_faults"] > 0
    assert sum(data["faults_by_kind"].values()) == data["injected_faults"]
    assert set(data["durations_by_seed"]) == {"1", "2"}
    assert not (out / "failed").exists()
