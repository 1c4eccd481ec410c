"""The embedded default used as a newcomer does: own module in a fresh folder, two terminals,
a trial that always raises, Ctrl-C, a finished run extended, list and delete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoq.audit import audit_file
from evoq.codec import decode
from evoq.events import ExperimentExtended, TrialFailed
from evoq.filelog import FileLog
from evoq.reducer import replay

from ..cluster import evoq, one_line_error, wait_for, worker_env, write_spec

SPACE = 'x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = { _type = "uniform", _value = [0, 1] }'


def spec_file(tmp_path: Path, name: str, trial: str = "tests.trials:quick", **strategy: object) -> Path:
    strategy.setdefault("population_size", 6)
    strategy.setdefault("sample_size", 2)
    strategy.setdefault("cycles", 20)
    return write_spec(tmp_path / f"{name}.toml", name, trial, SPACE, **strategy)


def start(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "evoq.cli", *args],
        cwd=cwd, env=worker_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def log_events(path: Path) -> list:
    return [decode(d) for _, d in FileLog(path).read()]


def test_a_second_run_of_the_same_embedded_experiment_is_refused_or_waits(tmp_path):
    spec = spec_file(tmp_path, "dual", cycles=30)
    first = start("run", str(spec), "--no-progress", "--json", cwd=tmp_path, EVOQ_TEST_SLEEP="0.1")
    log = tmp_path / ".evoq" / "dual.evoqlog"
    wait_for(lambda: log.exists() and log.stat().st_size > 500, timeout=60)
    second = evoq("run", str(spec), "--no-progress", cwd=tmp_path)
    one_line_error(second, "already being run by another evoq process", "--wait")
    waiting = start("run", str(spec), "--no-progress", "--json", "--wait", cwd=tmp_path)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    out2, err2 = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and "waiting for evoq process" in err2, err2
    assert json.loads(out2)["results"] == 30
    rep = audit_file(str(log))
    assert rep.ok, rep.findings
    assert not any(isinstance(e, TrialFailed) and e.kind == "lost" for e in log_events(log))


@pytest.mark.slow
def test_twenty_embedded_runs_declare_nothing_lost(tmp_path):
    """Trials that hold the GIL keep a worker thread that took a job off the queue from marking
    it started for a while: the controller must not call such a run lost (it did, in 5 runs of 20)."""
    spec = spec_file(
        tmp_path, "many", trial="tests.trials:busy", population_size=20, sample_size=5, cycles=150
    )
    for seed in range(20):
        run = evoq("run", str(spec), "--no-progress", "--json", "--seed", str(seed), "--name", f"many{seed}",
                   cwd=tmp_path, EVOQ_TEST_BUSY="0.02")  # fmt: skip
        assert run.returncode == 0, run.stderr
        state = json.loads(run.stdout)
        assert state["results"] == 150 and state["failed_by_kind"] == {}, (seed, state["failures"])


def test_a_newcomer_s_own_module_beside_the_spec_runs_from_any_folder(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "mytrain.py").write_text("def train(config):\n    return config['x'] + config['y']\n")
    spec = write_spec(
        project / "exp.toml", "mine", "mytrain:train", SPACE, population_size=4, sample_size=2, cycles=8
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-m", "evoq.cli", "run", str(spec), "--no-progress", "--json"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["results"] == 8 and "trial code from" in run.stderr


def test_a_trial_that_always_raises_shows_why_everywhere(tmp_path):
    spec = spec_file(tmp_path, "fails", trial="tests.trials:always_fails", max_failures=5)
    run = evoq("run", str(spec), "--json", cwd=tmp_path)
    assert run.returncode == 1
    state = json.loads(run.stdout)
    assert state["status"] == "failed" and set(state["failed_by_kind"]) == {"error"}
    assert state["failed_by_kind"]["error"] >= 5  # a report already on its way when it ended counts too
    assert (
        state["failures"][-1]["kind"] == "error" and "CUDA out of memory" in state["failures"][-1]["message"]
    )
    assert "RuntimeError: CUDA out of memory" in run.stderr  # the progress output names it
    text = evoq("status", "fails", cwd=tmp_path)
    assert "failures by kind: " in text.stdout and " error" in text.stdout
    assert "RuntimeError: CUDA out of memory" in text.stdout
    assert "{'error'" not in text.stdout
    table = evoq("trials", "fails", "--json", cwd=tmp_path)
    rows = json.loads(table.stdout)
    failed = [r for r in rows if r["status"] == "failed:error"]
    assert len(failed) >= 5 and all("CUDA out of memory" in r["message"] and r["worker"] for r in failed)
    assert {r["status"] for r in rows} <= {"failed:error", "cancelled"}
    csv_out = evoq("trials", "fails", "--csv", "--status", "failed", cwd=tmp_path)
    import csv
    import io

    table_rows = list(csv.reader(io.StringIO(csv_out.stdout)))
    assert table_rows[0] == ["trial", "attempt", "phase", "parent", "status", "metric", "duration", "worker",
                             "message", "config"]  # fmt: skip
    assert len(table_rows) == 1 + len(failed) and all("CUDA out of memory" in r[8] for r in table_rows[1:])
    again = evoq("status", "fails", "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["running"] == 0  # a finished experiment has nothing in flight


def test_a_trial_every_worker_refuses_stops_the_experiment_at_once(tmp_path):
    spec = spec_file(tmp_path, "refused", max_failures=100)
    run = evoq("run", str(spec), "--json", "--allow", "somewhere.else:train", cwd=tmp_path)
    assert run.returncode == 1
    state = json.loads(run.stdout)
    assert state["status"] == "failed" and set(state["failed_by_kind"]) == {"refused"}
    assert state["failed"] <= 6 * 3  # stopped when a trial was refused three times, not after 100 failures
    assert "refused by the workers 3 times" in state["reason"] and "allowlist" in state["reason"]
    assert "\n" not in state["reason"]


def running(tmp_path: Path, name: str) -> tuple[Path, subprocess.Popen[str], Path]:
    """An embedded run of 40 results, 0.3 s trials, some 15 records into its log: (spec, process, log)."""
    spec = spec_file(tmp_path, name, cycles=40)
    proc = start("run", str(spec), "--no-progress", "--json", cwd=tmp_path, EVOQ_TEST_SLEEP="0.3")
    log = tmp_path / ".evoq" / f"{name}.evoqlog"
    wait_for(lambda: log.exists() and sum(1 for _ in FileLog(log).read()) > 15, timeout=60)
    return spec, proc, log


def test_ctrl_c_preempts_what_runs_and_the_same_command_resumes(tmp_path):
    spec, proc, log = running(tmp_path, "intr")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted — run the same command again to resume" in err and "Traceback" not in err
    events = log_events(log)
    assert replay(events).running == {}  # every run in flight at Ctrl-C ended in the log ...
    failed = [e for e in events if isinstance(e, TrialFailed)]
    assert all(
        e.kind == "preempted" and e.message == "interrupted by the user" for e in failed
    )  # ... as preempted
    again = evoq("run", str(spec), "--no-progress", "--json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["results"] == 40
    assert not any(isinstance(e, TrialFailed) and e.kind == "lost" for e in log_events(log))
    assert audit_file(str(log)).ok


def test_a_second_ctrl_c_stops_at_once_with_130_and_the_run_resumes(tmp_path):
    """Ctrl-C twice (an impatient user) exited 1, "Aborted!" (exit 1 means a failed experiment)."""
    spec, proc, log = running(tmp_path, "twice")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err and "Aborted" not in err
    again = evoq("run", str(spec), "--no-progress", "--json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["results"] == 40
    assert audit_file(str(log)).ok


def test_a_finished_run_is_extended_and_other_changes_are_refused_by_name(tmp_path):
    spec = spec_file(tmp_path, "ext", cycles=10)
    assert evoq("run", str(spec), "--no-progress", cwd=tmp_path).returncode == 0
    more = evoq("run", str(spec), "--no-progress", "--json", "--cycles", "25", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    state = json.loads(more.stdout)
    assert state["results"] == 25 and state["cycles"] == 25
    log = tmp_path / ".evoq" / "ext.evoqlog"
    assert [e.cycles for e in log_events(log) if isinstance(e, ExperimentExtended)] == [25]
    assert audit_file(str(log)).ok
    again = evoq("run", str(spec), "--no-progress", "--json", cwd=tmp_path)  # the spec's 10: nothing to do
    assert again.returncode == 0 and json.loads(again.stdout)["results"] == 25
    lower = evoq("run", str(spec), "--cycles", "12", "--no-progress", "--json", cwd=tmp_path)
    assert lower.returncode == 0 and "a budget is only ever raised: running to 25" in lower.stderr
    assert json.loads(lower.stdout)["cycles"] == 25
    one_line_error(evoq("run", str(spec), "--seed", "9", cwd=tmp_path), "seed (9; the log has 3)", "--name")
    changed = spec.read_text().replace("x = [0, 1, 2, 3, 4, 5, 6, 7]", "x = [0, 1, 2]")
    (tmp_path / "changed.toml").write_text(changed.replace('name = "ext"', 'name = "ext"'))
    proc = evoq("run", "changed.toml", cwd=tmp_path)
    one_line_error(proc, "another space (changed 'x')", "in the embedded log")
    assert "population_size" not in proc.stderr and "sample_size" not in proc.stderr


def test_list_and_delete_embedded_experiments(tmp_path):
    for name in ("a1", "a2"):
        assert (
            evoq("run", str(spec_file(tmp_path, name, cycles=8)), "--no-progress", cwd=tmp_path).returncode
            == 0
        )
    listed = evoq("list", "--json", cwd=tmp_path)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"a1", "a2"} and rows["a1"]["status"] == "completed" and rows["a1"]["results"] == 8
    assert "a1" in evoq("list", cwd=tmp_path).stdout
    one_line_error(evoq("delete", "a1", cwd=tmp_path), "--yes")
    assert evoq("delete", "a1", "--yes", cwd=tmp_path).returncode == 0
    assert [r["name"] for r in json.loads(evoq("list", "--json", cwd=tmp_path).stdout)] == ["a2"]
    one_line_error(evoq("delete", "a1", "--yes", cwd=tmp_path), "no embedded experiment")
    for command in ("replay", "audit", "lineage"):
        assert evoq(command, "a2", cwd=tmp_path).returncode == 0, command
