"""`scripts/bench_search.py --quick` runs and writes its three outputs (peers only if installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_table_curves_and_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_search.py"), "--quick", "--out", str(tmp_path),
         "--methods", "evoq-auto", "evoq-nni", "random"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "results.md").read_text().count("| evoq-auto |") >= 2
    assert (tmp_path / "regret_vs_evals.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["tasks"]) == 2
    for task in data["tasks"]:
        for method in ("evoq-auto", "evoq-nni", "random"):
            cell = data["evals"][task][method]["100"]
            assert set(cell) >= {"mean_regret", "ci95", "n_seeds"} and cell["n_seeds"] == 20
            assert cell["mean_regret"] >= 0
