"""Command trials on a real redis-server with real `rq worker`s: NNI trial code unchanged, failures
with the script's own output, timeouts and worker shutdowns that leave no process behind, and
command lines the worker's allowlist refuses before anything starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from evoq.audit import audit_entries
from evoq.events import TrialCompleted, TrialFailed, TrialProgressed
from evoq.keys import Keys
from evoq.redislog import RedisLog
from evoq.testing import WorkerProcess
from workers.trial import MAX_MESSAGE

from ..cluster import ROOT, RedisServer, controller, evoq, stream_events, wait_for, worker_env

EXAMPLE = ROOT / "evoq" / "examples" / "nni_sklearn"


@pytest.fixture
def server(tmp_path: Path):
    (tmp_path / "redis").mkdir()
    s = RedisServer(tmp_path / "redis")
    yield s
    s.stop()


class Workers:
    """Command-trial workers: `evoq worker` processes with a trial directory and allowed commands."""

    def __init__(self, server: RedisServer, tmp: Path) -> None:
        self.server, self.tmp, self.procs = server, tmp, []

    def start(
        self, trial_dir: Path, *commands: str, kind: str = "rq.worker.Worker", **env: str
    ) -> WorkerProcess:
        name = f"cw{len(self.procs)}-{time.monotonic_ns()}"
        extra = {
            "EVOQ_TRIAL_DIR": str(trial_dir), "EVOQ_ALLOW_COMMANDS": "\n".join(commands),
            "EVOQ_TRIAL_LOG_DIR": str(self.tmp / "trial-logs"), **env,
        }  # fmt: skip
        w = WorkerProcess(self.server.url, name, worker_class=kind, env=worker_env(**extra), cwd=ROOT)
        self.procs.append(w)
        return w

    def stop(self) -> None:
        for w in self.procs:
            w.stop()


@pytest.fixture
def workers(server, tmp_path):
    ws = Workers(server, tmp_path)
    yield ws
    ws.stop()


def finish(proc: Any, timeout: float = 180) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else {}), err


def test_an_nni_trial_folder_runs_unchanged_with_intermediate_results(tmp_path, server, workers):
    folder = tmp_path / "nni"
    shutil.copytree(EXAMPLE, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    spec = folder / "evoq.toml"
    spec.write_text(
        spec.read_text()
        .replace("cycles = 40", "cycles = 8")
        .replace("population_size = 10", "population_size = 4")
    )
    workers.start(folder, "python3 main.py")
    workers.start(folder, "python3 main.py")
    code, final, err = finish(controller(spec, server.url))
    assert code == 0, err
    assert final["status"] == "completed" and final["results"] == 8 and final["best"]["metric"] > 0.8
    events = [e for _, e in stream_events(server.client(), "nni-sklearn")]
    progressed = [e for e in events if isinstance(e, TrialProgressed)]
    assert len({e.trial for e in progressed}) == 8 and all(0 < e.value <= 1 for e in progressed)
    assert audit_entries(RedisLog(server.client(), Keys("nni-sklearn")).read()).ok
    table = evoq("trials", "nni-sklearn", "--json", "--redis-url", server.url, cwd=tmp_path)
    rows = json.loads(table.stdout)
    assert all(r["status"] == "completed" and r["intermediate"] for r in rows)
    for name in ("main.py", "search_space.json", "config.yml"):  # NNI's files run as they are
        assert (folder / name).read_bytes() == before[name]


SCRIPTS = {
    "exit1.py": "import sys\nprint('loading data')\nprint('CUDA error: out of memory', file=sys.stderr)\nsys.exit(1)\n",
    "silent.py": "print('trained, but forgot to report')\n",
    "hang.py": (
        "import os, subprocess, sys, time, nni\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "open(os.environ['EVOQ_PIDS'], 'a').write(f'{os.getpid()} {child.pid}\\n')\n"
        "nni.report_intermediate_result(0.1)\n"
        "time.sleep(300)\n"
    ),
    "ok.py": "import evoq.trial as t\nc = t.config()\nt.report_intermediate(c['x'] / 20, step=0)\nt.report(c['x'] / 10)\n",
    "loud.py": "import sys\nsys.stdout.write('x' * 3_000_000 + '\\nthe last words\\n')\nsys.exit(3)\n",
}


def trial_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir(exist_ok=True)
    for name, text in SCRIPTS.items():
        (folder / name).write_text(text)
    return folder


def _spec(tmp_path: Path, name: str, command: list[str], **strategy: Any) -> Path:
    lines = [f'name = "{name}"', f"trial = {{ command = {json.dumps(command)} }}", "seed = 1", "[strategy]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in strategy.items()]
    lines += ["[space]", "x = [1, 2, 3, 4, 5, 6, 7, 8]"]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def terminal(server: RedisServer, name: str) -> list[TrialFailed | TrialCompleted]:
    return [e for _, e in stream_events(server.client(), name) if isinstance(e, TrialFailed | TrialCompleted)]


def test_failures_carry_the_script_s_own_last_lines(tmp_path, server, workers):
    folder = trial_folder(tmp_path)
    workers.start(folder, "python3 exit1.py", "python3 silent.py", "python3 loud.py", "python3 ok.py")
    for name, script, expect in (
        ("exits", "exit1.py", "command exited with status 1"),
        ("silent", "silent.py", "reported no result"),
        ("loud", "loud.py", "command exited with status 3"),
    ):
        spec = _spec(
            tmp_path, name, ["python3", script], population_size=2, sample_size=1, cycles=2, max_failures=2
        )
        code, final, err = finish(controller(spec, server.url))
        assert code == 1 and final["status"] == "failed", err
        failed = terminal(server, name)
        assert failed and all(isinstance(e, TrialFailed) and e.kind == "error" for e in failed)
        message = failed[0].message
        assert expect in message and len(message) <= MAX_MESSAGE and "log: " in message
    assert "CUDA error: out of memory" in terminal(server, "exits")[0].message
    assert "trained, but forgot to report" in terminal(server, "silent")[0].message
    assert "the last words" in terminal(server, "loud")[0].message
    logs = sorted((tmp_path / "trial-logs").glob("loud-*.log*"))
    assert logs and all(p.stat().st_size <= 10 * 1024 * 1024 for p in logs)
    spec = _spec(tmp_path, "fine", ["python3", "ok.py"], population_size=3, sample_size=1, cycles=6)
    code, final, err = finish(controller(spec, server.url))
    assert code == 0 and final["results"] == 6, err
    assert final["best"]["metric"] >= max(p["metric"] for p in final["population"])
    assert final["best"]["metric"] * 10 in range(1, 9)  # ok.py reports x / 10


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"


def test_a_command_past_its_timeout_ends_with_its_children(tmp_path, server, workers):
    folder = trial_folder(tmp_path)
    pids = tmp_path / "pids"
    workers.start(folder, "python3 hang.py", EVOQ_PIDS=str(pids), EVOQ_KILL_GRACE="1")
    spec = _spec(tmp_path, "slow", ["python3", "hang.py"], population_size=2, sample_size=1, cycles=2,
                 trial_timeout=4, max_failures=1)  # fmt: skip
    code, _final, err = finish(controller(spec, server.url), timeout=120)
    assert code == 1, err
    failed = terminal(server, "slow")
    assert failed and failed[0].kind == "timeout"
    started = [int(p) for line in pids.read_text().split("\n") if line for p in line.split()]
    assert started and wait_for(lambda: not any(alive(p) for p in started), timeout=15)


def test_a_worker_shutdown_preempts_the_command_and_it_runs_again(tmp_path, server, workers):
    folder = trial_folder(tmp_path)
    pids = tmp_path / "pids"
    (folder / "maybe_hang.py").write_text(
        "import os, subprocess, time, nni\n"
        "if os.environ.get('HANG'):\n"
        "    child = subprocess.Popen(['sleep', '300'])\n"
        "    open(os.environ['EVOQ_PIDS'], 'a').write(f'{os.getpid()} {child.pid}\\n')\n"
        "    time.sleep(300)\n"
        "nni.report_final_result(nni.get_next_parameter()['x'])\n"
    )
    heroku = workers.start(folder, "python3 maybe_hang.py", kind="rq.worker.HerokuWorker", HANG="1",
                           EVOQ_PIDS=str(pids))  # fmt: skip
    spec = _spec(tmp_path, "dyno", ["python3", "maybe_hang.py"], population_size=2, sample_size=1, cycles=2)
    proc = controller(spec, server.url)
    wait_for(lambda: pids.exists() and pids.read_text().strip(), timeout=60)
    heroku.proc.send_signal(signal.SIGTERM)  # a dyno restart
    preempted = wait_for(lambda: [e for e in terminal(server, "dyno") if e.kind == "preempted"], timeout=60)
    assert preempted
    workers.start(folder, "python3 maybe_hang.py")  # a fresh dyno, whose trials finish
    code, final, err = finish(proc)
    assert code == 0 and final["results"] == 2, err
    started = [int(p) for line in pids.read_text().split("\n") if line for p in line.split()]
    assert wait_for(lambda: not any(alive(p) for p in started), timeout=15)


@pytest.mark.parametrize(
    ("command", "cwd"),
    [
        (["python3", "-c", "open('MARKER', 'w')"], "."),  # an interpreter flag
        (["python3", "ok.py", "--extra", "MARKER"], "."),  # an argument added
        (["python3"], "."),  # an argument dropped
        (["python3", "./ok.py"], "."),  # the same file, named otherwise
        (["python3", "ok.py"], "sub"),  # another folder
        (["/bin/sh", "-c", "touch MARKER"], "."),
    ],
)
def test_command_lines_the_worker_did_not_allow_never_start(tmp_path, server, workers, command, cwd):
    folder = trial_folder(tmp_path)
    (folder / "sub").mkdir()
    (folder / "sub" / "ok.py").write_text("open('MARKER', 'w')\n")
    workers.start(folder, "python3 ok.py")
    lines = ['name = "refused"', f"trial = {{ command = {json.dumps(command)}, cwd = {json.dumps(cwd)} }}",
             "[strategy]", "population_size = 2", "sample_size = 1", "cycles = 2", "max_failures = 5",
             "[space]", "x = [1, 2, 3]"]  # fmt: skip
    spec = tmp_path / "refused.toml"
    spec.write_text("\n".join(lines) + "\n")
    code, final, err = finish(controller(spec, server.url), timeout=120)
    assert code == 1 and "refused by the workers" in final["reason"], err
    assert {e.kind for e in terminal(server, "refused")} == {"refused"}
    assert not list(folder.rglob("MARKER")) and not (ROOT / "MARKER").exists()
    logs = tmp_path / "trial-logs"
    assert not (logs.exists() and list(logs.glob("refused-*")))  # no process was started


def test_the_embedded_default_runs_the_nni_example(tmp_path):
    run = evoq(
        "run", "example:nni_sklearn", "--no-progress", "--json", "--cycles", "6", cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0, run.stderr
    state = json.loads(run.stdout)
    assert state["results"] == 6 and state["best"]["metric"] > 0.8
    assert not (tmp_path / "nni").exists()  # no NNI was needed (nor installed)


def test_a_run_declared_lost_has_its_process_group_ended(tmp_path, server, workers):
    """A work horse frozen (SIGSTOP) stops heartbeating: the controller declares its run lost and
    sends rq's stop-job; the horse is killed, and the reaper it leaves ends the trial's group."""
    folder = trial_folder(tmp_path)
    pids = tmp_path / "pids"
    (folder / "frozen.py").write_text(
        "import os, subprocess, time, nni\n"
        "if not os.path.exists(os.environ['EVOQ_PIDS']):\n"
        "    child = subprocess.Popen(['sleep', '300'])\n"
        "    open(os.environ['EVOQ_PIDS'], 'a').write(f'{os.getpid()} {child.pid}\\n')\n"
        "    time.sleep(300)\n"
        "nni.report_final_result(nni.get_next_parameter()['x'])\n"
    )
    w = workers.start(folder, "python3 frozen.py", EVOQ_PIDS=str(pids), EVOQ_KILL_GRACE="1")
    spec = _spec(tmp_path, "frozen", ["python3", "frozen.py"], population_size=2, sample_size=1, cycles=2)
    proc = controller(spec, server.url)
    wait_for(lambda: pids.exists() and pids.read_text().strip(), timeout=60)
    os.kill(w.horse(), signal.SIGSTOP)
    lost = wait_for(lambda: [e for e in terminal(server, "frozen") if isinstance(e, TrialFailed) and e.kind == "lost"],
                    timeout=60)  # fmt: skip
    assert "stopped heartbeating" in lost[0].message
    started = [int(p) for line in pids.read_text().split("\n") if line for p in line.split()]
    assert wait_for(lambda: not any(alive(p) for p in started), timeout=30)
    code, final, err = finish(proc)
    assert code == 0 and final["results"] == 2, err


def test_hostile_configs_for_a_flags_command_are_refused(tmp_path, server, workers):
    """A job for an allowed `args = "flags"` command whose config names a parameter the space
    does not have made it one more --flag of the script (its own --save wrote a file); a bytes
    or extension value raised in the worker, leaving the run unreported; a config too large for
    the environment left its temporary folder behind. Each is refused with a reason."""
    from rq import Queue

    from evoq.codec import encode
    from evoq.events import ExperimentCreated
    from evoq.space import SearchSpace
    from evoq.strategy import Strategy
    from evoq.trialspec import CommandTrial
    from workers.payload import make_payload

    folder = tmp_path / "flags"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    (folder / "train.py").write_text(
        "import argparse, evoq.trial\n"
        "p = argparse.ArgumentParser(); p.add_argument('--x'); p.add_argument('--save')\n"
        "a = p.parse_args()\n"
        "if a.save: open(a.save, 'w').close()\n"
        "evoq.trial.report(float(a.x))\n"
    )
    trial = CommandTrial(("python3", "train.py"), ".", "flags").canonical()
    client = server.client()
    created = ExperimentCreated(
        "flags", SearchSpace.parse({"x": [1, 2]}).spec(), Strategy(cycles=10).to_dict(), 0, trial, "t", 1.0
    )
    RedisLog(client, Keys("flags")).append([encode(created)])
    q = Queue("evoq", connection=client, serializer="workers.serializer.MsgpackSerializer", job_class="workers.job.EvoqJob")  # fmt: skip
    tmp_before = set(Path("/tmp").glob("evoq-flags-*"))
    configs: dict[int, Any] = {
        0: {"x": 2, "save": str(marker)},
        1: {"x": b"\x00\x01"},
        2: {"x": "A" * 200_000},
        3: {"x": 1},  # the real one
    }
    for i, config in configs.items():
        q.enqueue_call("workers.trial.run_trial", args=(make_payload("flags", i, 0, config, trial, 5.0),),
                       job_id=Keys("flags").job_id(i, 0))  # fmt: skip
    workers.start(folder, trial.removeprefix("command:"))

    def ended() -> dict[int, Any] | None:
        found = {e.trial: e for e in terminal(server, "flags")}
        return found if len(found) == len(configs) else None

    ends = wait_for(ended, timeout=120)
    assert not marker.exists(), "an extra config key became an option of the script"
    assert isinstance(ends[3], TrialCompleted) and ends[3].metric == 1.0
    for i in (0, 1, 2):
        assert isinstance(ends[i], TrialFailed) and ends[i].kind == "refused", ends[i]
    assert "space does not have ('save')" in ends[0].message
    assert "not JSON data" in ends[1].message
    assert set(Path("/tmp").glob("evoq-flags-*")) == tmp_before  # no folder left behind
