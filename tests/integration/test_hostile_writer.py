"""An attacker who can write to evoq's Redis: trial paths, job features, stream entries.

Everything runs on a real redis-server with real ``rq worker`` processes started as evoq starts
them. Each probe asserts what must not happen — no marker file, no HTTP request — and what must:
a refusal with a one-line reason, a controller that keeps going, commands that report the bad
records instead of failing on them.
"""

from __future__ import annotations

import http.server
import inspect
import json
import os
import re
import signal
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus
from rq.webhook import Webhook

from evoq.codec import SCHEMA_VERSION, decode, encode
from evoq.events import ExperimentCreated, TrialCompleted, TrialFailed
from evoq.keys import STREAM_FIELD, Keys
from evoq.redislog import RedisLog
from evoq.space import SearchSpace
from evoq.strategy import Strategy
from evoq.testing import free_port
from workers.job import EvoqJob
from workers.payload import make_payload

from ..cluster import ROOT, RedisServer, Worker, controller, evoq, wait_for, write_spec

SERIALIZER = "workers.serializer.MsgpackSerializer"
ALLOW = "tests.hostile_trials:*,evoq.examples.*"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = RedisServer(tmp_path_factory.mktemp("redis"))
    yield s
    s.stop()


class Listener:
    """An HTTP server on loopback that records every request it receives."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _hit(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.end_headers()

            do_GET = do_POST = _hit

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.httpd.shutdown()


def create_experiment(client: Any, name: str, *, version: int = SCHEMA_VERSION) -> None:
    """An experiment's creation record, as a controller writes it (in schema ``version``)."""
    created = ExperimentCreated(
        name, SearchSpace.parse({"x": [1, 2]}).spec(), Strategy(cycles=10).to_dict(), 0, "tests.hostile_trials:train",
        "test", 1.0,
    )  # fmt: skip
    RedisLog(client, Keys(name)).append([encode(created, version=version)])


def enqueue(client: Any, name: str, trial: int, fn: str, config: dict[str, Any], **rq_options: Any) -> Job:
    """An evoq job as the controller enqueues it, plus whatever RQ options the attacker adds."""
    q = Queue("evoq", connection=client, serializer=SERIALIZER, job_class="workers.job.EvoqJob")
    return q.enqueue_call(
        "workers.trial.run_trial",
        args=(make_payload(name, trial, 0, config, fn, 5.0),),
        job_id=Keys(name).job_id(trial, 0),
        **rq_options,
    )


def drain(server: RedisServer, marker: Path, **env: str) -> None:
    """One burst worker runs everything queued, then exits."""
    env = {"EVOQ_ALLOW": ALLOW, "EVOQ_TEST_MARKER": str(marker), **env}
    w = Worker(server.url, f"burst-{time.monotonic_ns()}", burst=True, **env)
    try:
        w.proc.wait(timeout=120)
    finally:
        w.stop()


def outcomes(client: Any, name: str) -> dict[int, Any]:
    """The terminal event of each trial in the experiment's stream."""
    return {
        e.trial: e
        for _, data in RedisLog(client, Keys(name)).read()
        if isinstance(e := decode(data), TrialCompleted | TrialFailed)
    }


def rq_failure(client: Any, job_id: str) -> str:
    job = Job.fetch(job_id, connection=client, serializer=SERIALIZER)
    assert job.get_status() == JobStatus.FAILED, job.get_status()
    result = job.latest_result()
    return (result.exc_string or "") if result is not None else ""


# -- 1. trial paths -------------------------------------------------------------------------------
PATH_PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    # dictConfig reached through the module's `import logging.config`: its filter factory runs a
    # shell command (this one created the marker before the fix)
    "dictconfig": ("tests.hostile_trials:logging.config.dictConfig", {
        "version": 1, "filters": {"f": {"()": "os.system", "command": "touch $EVOQ_TEST_MARKER"}}}),
    "package_init": ("evoq.examples.__init__:resources.abc.os.system", {"x": 1}),
    "environ_update": ("evoq.examples.__init__:resources.abc.os.environ.update", {"EVOQ_PWNED": "1"}),
    "os_system": ("tests.hostile_trials:os.system", {"x": 1}),
    "pickle_loads": ("tests.hostile_trials:pickle.loads", {"x": 1}),
    "dunder_import": ("tests.hostile_trials:__import__", {"x": 1}),
    "path_traversal": ("tests.hostile_trials:train/../x", {"x": 1}),
    "imported_function": ("tests.hostile_trials:run_command", {"x": 1}),
    "module_getattr": ("tests.hostile_trials:anything", {"x": 1}),
    "private": ("tests.hostile_trials:_private", {"x": 1}),
    "class": ("tests.hostile_trials:Trainer", {"x": 1}),
    "partial": ("tests.hostile_trials:touch_marker", {"x": 1}),
    "dunder_segment": ("tests.__init__:train", {"x": 1}),
    "not_allowed_module": ("tests.import_marker:train", {"x": 1}),  # importing it touches the marker
    "builtins": ("builtins:exec", {"x": 1}),
    "two_colons": ("tests.hostile_trials:train:x", {"x": 1}),
    "unicode_lookalike": ("tests.hostile_trials:tr\u0430in", {"x": 1}),
    "too_long": ("a." * 200 + "b:train", {"x": 1}),
    "command_not_allowed": ('command:{"args":"none","command":["python3","-c","import os"],"cwd":"."}', {"x": 1}),
    "command_not_canonical": ('command:{"command": ["python3", "-c", "x"]}', {"x": 1}),
    "empty_function": ("tests.hostile_trials:", {"x": 1}),
}  # fmt: skip


def test_trial_paths_reach_nothing_but_functions_the_allowlist_admits(server, tmp_path):
    client = server.client()
    marker = tmp_path / "pwned"
    create_experiment(client, "paths")
    names = sorted(PATH_PROBES)
    for i, name in enumerate(names):
        fn, config = PATH_PROBES[name]
        enqueue(client, "paths", i, fn, config)
    enqueue(client, "paths", len(names), "tests.hostile_trials:train", {"x": 2})  # the real one
    drain(server, marker)
    assert not marker.exists(), "a refused trial path ran code or imported a module"
    ends = outcomes(client, "paths")
    for i, name in enumerate(names):
        event = ends.get(i)
        assert isinstance(event, TrialFailed) and event.kind == "refused", (name, event)
        assert "\n" not in event.message.split(" (worker allowlist")[0], (name, event.message)
    assert isinstance(ends[len(names)], TrialCompleted) and ends[len(names)].metric == 2.0
    assert "EVOQ_PWNED" not in os.environ


# -- 2. job features ------------------------------------------------------------------------------
def test_jobs_carrying_anything_evoq_does_not_set_are_refused_and_send_nothing(server, tmp_path):
    client = server.client()
    marker = tmp_path / "pwned"
    listener = Listener()
    create_experiment(client, "jobs")
    mark = Callback("tests.trials.mark")
    hooks = [Webhook(listener.url, "finished"), Webhook(listener.url, "failed", method="POST")]
    good = ("tests.hostile_trials:train", {"x": 1})
    probes: dict[str, Job] = {}
    probes["webhooks"] = enqueue(client, "jobs", 0, *good, webhooks=hooks)
    probes["callbacks"] = enqueue(client, "jobs", 1, *good, on_success=mark, on_failure=mark, on_stopped=mark)
    probes["retry"] = enqueue(client, "jobs", 2, *good, retry=Retry(max=3))
    probes["meta"] = enqueue(client, "jobs", 3, *good, meta={"owner": "mallory"})
    probes["ttl"] = enqueue(client, "jobs", 4, *good, ttl=600)
    probes["unknown_field"] = enqueue(client, "jobs", 5, *good)
    client.hset(probes["unknown_field"].key, "evil", "1")
    probes["origin"] = enqueue(client, "jobs", 6, *good)
    client.hset(probes["origin"].key, "origin", "elsewhere")
    probes["dependency"] = enqueue(client, "jobs", 7, *good)
    client.hset(probes["dependency"].key, "dependency_ids", json.dumps(["evoq-jobs-0-0"]))
    probes["group"] = enqueue(client, "jobs", 8, *good)
    client.hset(probes["group"].key, "group_id", "g1")
    q = Queue("evoq", connection=client, serializer=SERIALIZER)
    payload = make_payload("jobs", 9, 0, {"x": 1}, "tests.hostile_trials:train", 5.0)
    probes["other_run"] = q.enqueue_call("workers.trial.run_trial", args=(payload,), job_id="evoq-jobs-10-0")
    probes["extra_key"] = q.enqueue_call(
        "workers.trial.run_trial",
        args=({**payload, "trial": 11, "cmd": "rm -rf /"},),
        job_id="evoq-jobs-11-0",
    )
    probes["kwargs"] = q.enqueue_call(
        "workers.trial.run_trial", args=({**payload, "trial": 12},), kwargs={"x": 1}, job_id="evoq-jobs-12-0"
    )
    probes["other_function"] = q.enqueue_call("os.system", args=(f"touch {marker}",), job_id="evoq-jobs-13-0")
    probes["no_experiment"] = enqueue(client, "ghost", 0, *good)
    drain(server, marker)
    listener.close()
    assert listener.hits == [], "a job made the worker send HTTP requests"
    assert not marker.exists(), "a callback or foreign function ran"
    for name, job in probes.items():
        text = rq_failure(client, job.id)
        assert "refused" in text or "not an evoq trial payload" in text or "no readable creation" in text, (
            name,
            text,
        )
    assert outcomes(client, "jobs") == {}, "a refused job reported to the experiment"
    assert not client.exists(Keys("ghost").stream), "a job for a missing experiment created its stream"
    retried = probes["retry"].id  # failed for good: not queued again, not scheduled for a retry
    assert client.lpos("rq:queue:evoq", retried) is None
    assert client.zscore("rq:scheduled:evoq", retried) is None


def fields_rq_reads() -> list[str]:
    """Every job hash field RQ's ``Job.restore`` reads (from its source: a newer RQ that reads
    more is probed for them too)."""
    source = inspect.getsource(Job.restore)
    names = re.findall(r"obj\[['\"](\w+)['\"]\]|obj\.get\(['\"](\w+)['\"]|['\"](\w+)['\"] in obj", source)
    found = sorted({n for group in names for n in group if n} - {"data"})
    assert {"status", "timeout", "created_at", "dependency_ids", "retry_intervals"} <= set(found)
    return found


def rq_cannot_read(client: Any, fields: dict[str, bytes]) -> bool:
    """Whether RQ's own job class fails to load this hash."""
    job = Job("probe", connection=client, serializer=SERIALIZER)
    try:
        job.restore(fields)
    except Exception:
        return True
    return False


def test_job_hashes_rq_cannot_read_are_refused_and_never_stop_a_worker(server, tmp_path):
    """A value RQ's own parsing trips on (in every field it reads), a data field too large, a
    zlib bomb: before the fix one such job made the worker that dequeued it quit (exit 0), and
    the bomb took 1.85 GB of its memory. Each is refused and failed; the job after them runs."""
    client = server.client()
    create_experiment(client, "unreadable")
    good = ("tests.hostile_trials:train", {"x": 1})
    bad: dict[str, Job] = {}
    fields = fields_rq_reads()
    for i, field in enumerate(fields):
        bad[field] = enqueue(client, "unreadable", i, *good)
        client.hset(bad[field].key, field, b"\xff{[not a value")
    n = len(fields)
    bad["data_too_large"] = enqueue(client, "unreadable", n, *good)
    client.hset(bad["data_too_large"].key, "data", os.urandom(2 << 20))
    bad["zlib_bomb"] = enqueue(client, "unreadable", n + 1, *good)
    client.hset(bad["zlib_bomb"].key, "data", zlib.compress(b"\0" * (256 << 20), 9))  # 256 MiB from 0.25 MB
    bad["traceback_bomb"] = enqueue(client, "unreadable", n + 3, *good)  # RQ inflates exc_info too
    client.hset(bad["traceback_bomb"].key, "exc_info", zlib.compress(b"\0" * (256 << 20), 9))
    bad["field_name"] = enqueue(client, "unreadable", n + 4, *good)  # a name RQ cannot decode
    client.hset(bad["field_name"].key, b"\xff\xfe", "x")
    enqueue(client, "unreadable", n + 2, "tests.hostile_trials:train", {"x": 2})
    unreadable = {k for k, job in bad.items() if rq_cannot_read(client, client.hgetall(job.key))}
    assert {"status", "timeout", "created_at", "retry_intervals"} <= unreadable
    drain(server, tmp_path / "marker")
    ends = outcomes(client, "unreadable")
    assert isinstance(ends.get(n + 2), TrialCompleted), "the job queued after the unreadable ones did not run"
    assert ends[n + 2].metric == 2.0
    for name, job in bad.items():
        status = client.hget(job.key, "status")
        assert status in (b"failed", b"finished"), (name, status)  # ended: nothing left queued
        if name in unreadable or name in ("data_too_large", "zlib_bomb", "traceback_bomb", "field_name"):
            assert status == b"failed", name
            loaded = EvoqJob.fetch(job.id, connection=client, serializer=SERIALIZER)
            result = loaded.latest_result()
            text = (result.exc_string or "") if result is not None else ""
            assert "refused" in text, (name, text)
    assert client.llen("rq:queue:evoq") == 0


def test_a_controller_whose_job_hashes_are_rewritten_goes_on(server, tmp_path):
    """One HSET of a value RQ cannot parse on a queued job stopped the controller with a
    traceback (declaring the run lost, it read the job back with RQ's own class); a key of
    another type in place of a job hash or of the queue's worker set stopped it (WRONGTYPE).
    Now the run is declared lost, run again, and the experiment completes."""
    client = server.client()
    spec = write_spec(
        tmp_path / "s.toml", "rewritten", "tests.trials:quick", "x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = [0, 1, 2, 3]",
        population_size=4, sample_size=2, cycles=8,
    )  # fmt: skip
    proc = controller(spec, server.url)
    workers: list[Worker] = []
    try:
        first = "rq:job:" + Keys("rewritten").job_id(0, 0)
        wait_for(lambda: client.hget(first, "status") == b"queued", timeout=60)  # no worker yet
        client.hset(first, mapping={"status": "bogus", "timeout": "1x"})
        second = "rq:job:" + Keys("rewritten").job_id(0, 1)
        wait_for(lambda: client.hget(second, "status") == b"queued", timeout=60)
        # keys of another type where RQ keeps a job hash and the queue's worker set
        client.delete(second, "rq:workers:evoq")
        client.set(second, "x")
        client.set("rq:workers:evoq", "x")
        wait_for(lambda: client.exists("rq:job:" + Keys("rewritten").job_id(0, 2)), timeout=60)
        assert proc.poll() is None, proc.communicate()
        client.delete("rq:workers:evoq")
        workers = [Worker(server.url, f"rw-{time.monotonic_ns()}", EVOQ_TEST_SLEEP="0.05")]
        out, err = proc.communicate(timeout=120)
    finally:
        for w in workers:
            w.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    final = json.loads(out)
    assert final["status"] == "completed" and final["results"] == 8
    lost = [e for e in outcomes(client, "rewritten").values() if isinstance(e, TrialFailed)]
    assert all(e.kind == "lost" for e in lost)


def test_a_pickled_payload_never_unpickles(server, tmp_path):
    class Exploit:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    q = Queue("evoq", connection=server.client())  # RQ's default pickle serializer
    job = q.enqueue_call("workers.trial.run_trial", args=(Exploit(),), job_id="evoq-pickled-0-0")
    drain(server, tmp_path / "marker")
    assert not (tmp_path / "pwned").exists()
    assert Job.fetch(job.id, connection=server.client()).get_status() == JobStatus.FAILED


def test_a_newer_worker_writes_in_the_experiment_s_older_schema(server, tmp_path):
    client = server.client()
    create_experiment(client, "old", version=1)
    enqueue(client, "old", 0, "tests.hostile_trials:train", {"x": 1})
    enqueue(client, "old", 1, "tests.hostile_trials:_private", {"x": 1})
    drain(server, tmp_path / "marker")
    raw = [msgpack.unpackb(data) for _, data in RedisLog(client, Keys("old")).read()]
    assert {r[1] for r in raw} == {1}
    refused = [r for r in raw if r[0] == "trial_failed"]
    assert refused and refused[0][4] == "lost" and refused[0][5].startswith("refused: ")


# -- 3. stream entries ----------------------------------------------------------------------------
HUGE = 50 * 1024 * 1024


def hostile_entries() -> list[dict[bytes, bytes]]:
    pack = msgpack.packb
    return [
        {STREAM_FIELD: b"\x93garbage"},
        {STREAM_FIELD: pack([1, 2, 3])},
        {b"not-e": b"x"},
        {STREAM_FIELD: pack(["bogus_event", 2, 1])},
        {STREAM_FIELD: pack(["trial_started", SCHEMA_VERSION + 1, 0, 0, "w", 1.0])},
        {STREAM_FIELD: pack(["trial_completed", 2, "0", 0, 1.0, 1.0, "w", 1.0])},
        {STREAM_FIELD: pack(["trial_failed", 2, 0, 0, "weird", "m", "w", 1.0])},
        {STREAM_FIELD: b"\x00" * HUGE},
        {STREAM_FIELD: pack(["trial_failed", 2, 0, 0, "error", "x" * HUGE, "w", 1.0])},
    ]


def test_bad_stream_entries_are_rejected_and_reported_and_never_halt_anything(server, tmp_path):
    client = server.client()
    spec = write_spec(
        tmp_path / "s.toml", "streamy", "tests.trials:quick", "x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = [0, 1, 2, 3]",
        population_size=6, sample_size=2, cycles=30,
    )  # fmt: skip
    workers = [Worker(server.url, f"s{i}-{time.monotonic_ns()}", EVOQ_TEST_SLEEP="0.1") for i in range(2)]
    try:
        proc = controller(spec, server.url)
        stream = Keys("streamy").stream
        wait_for(lambda: client.xlen(stream) > 10, timeout=60)
        bad = hostile_entries()
        ids = [client.xadd(stream, fields).decode() for fields in bad]
        out, err = proc.communicate(timeout=180)
    finally:
        for w in workers:
            w.stop()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    final = json.loads(out)
    assert final["status"] == "completed" and final["rejected"] == len(bad)
    assert [r["position"] for r in final["rejections"]] == ids
    reasons = " | ".join(r["reason"] for r in final["rejections"])
    for words in ("not a msgpack record", "unknown event type 1", "no 'e' field", "unknown event type", "newer", "must be int",
                  "must be one of", "over the 1048576-byte limit"):  # fmt: skip
        assert words in reasons, words

    url = ["--redis-url", server.url]
    status = evoq("status", "streamy", "--json", *url, cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["rejected"] == len(bad), status.stderr
    text = evoq("status", "streamy", *url, cwd=tmp_path)
    assert text.returncode == 0 and f"rejected records: {len(bad)} skipped" in text.stdout
    again = evoq("run", str(spec), "--no-progress", *url, cwd=tmp_path)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    export = evoq("export", "streamy", "-o", str(tmp_path / "x.evoqlog"), *url, cwd=tmp_path)
    assert export.returncode == 0 and "Traceback" not in export.stderr, export.stderr
    for source in (str(tmp_path / "x.evoqlog"), "streamy"):
        audit = evoq("audit", source, "--json", *url, cwd=tmp_path)
        assert audit.returncode == 1 and "Traceback" not in audit.stderr, audit.stderr
        report = json.loads(audit.stdout)
        assert report["rejected"] == len(bad) and report["decisions_checked"] >= 30
        assert {f["kind"] for f in report["findings"]} == {"rejected"}
        assert [f["position"] for f in report["findings"]][2] == ids[2] or source != "streamy"
    replayed = evoq("replay", str(tmp_path / "x.evoqlog"), "--json", cwd=tmp_path)
    assert replayed.returncode == 0 and json.loads(replayed.stdout)["rejected"] == len(bad)


def test_a_trial_s_huge_message_is_cut_to_fit_a_record(server, tmp_path):
    client = server.client()
    create_experiment(client, "loud")
    (tmp_path / "loud_trial.py").write_text("def train(config):\n    raise RuntimeError('x' * 5_000_000)\n")
    enqueue(client, "loud", 0, "loud_trial:train", {"x": 1})
    drain(
        server, tmp_path / "marker", EVOQ_ALLOW="loud_trial:train", PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"
    )
    (failed,) = outcomes(client, "loud").values()
    assert isinstance(failed, TrialFailed) and failed.kind == "error"
    assert 1000 < len(failed.message) <= 8192 and "characters cut" in failed.message


# -- 4. credentials -------------------------------------------------------------------------------
def test_the_redis_password_never_reaches_a_command_line(tmp_path):
    server = RedisServer(tmp_path, password="s3cret-pw")
    try:
        printed = evoq("worker", "--print-command", "--redis-url", server.url, cwd=tmp_path)
        assert printed.returncode == 0 and "s3cret-pw" not in printed.stdout and ":***@" in printed.stdout
        import subprocess
        import sys

        proc = subprocess.Popen(
            [sys.executable, "-m", "evoq.cli", "worker", "--name", "pwcheck"],
            cwd=ROOT, env={**os.environ, "REDIS_URL": server.url, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(lambda: server.client().scard("rq:workers:evoq") > 0, timeout=30)
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert "rq.cli worker" in cmdline and "s3cret-pw" not in cmdline
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        server.stop()


def test_least_privilege_users_run_an_experiment_and_can_do_nothing_else(tmp_path):
    import subprocess
    import sys

    import redis

    server = RedisServer(tmp_path, password="admin-pw")
    try:
        printed = evoq("acl", "--experiment", "least", cwd=tmp_path)
        assert printed.returncode == 0, printed.stderr
        lines = printed.stdout.replace("CHANGE-ME-worker-password", "w-pw").replace(
            "CHANGE-ME-controller-password", "c-pw"
        )
        applied = subprocess.run(
            ["redis-cli", "-p", str(server.port), "-a", "admin-pw", "--no-auth-warning"],
            input=lines, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert applied.stdout.split() == ["OK", "OK"], applied
        worker_url = f"redis://evoq-worker:w-pw@127.0.0.1:{server.port}/0"
        controller_url = f"redis://evoq-controller:c-pw@127.0.0.1:{server.port}/0"
        spec = write_spec(
            tmp_path / "s.toml", "least", "tests.trials:quick", "x = [0, 1, 2, 3, 4, 5, 6, 7]\ny = [0, 1, 2, 3]",
            population_size=4, sample_size=2, cycles=12,
        )  # fmt: skip
        worker = subprocess.Popen(
            [sys.executable, "-m", "evoq.cli", "worker", "--redis-url", worker_url, "--name", "least-w"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "EVOQ_ALLOW": "tests.trials:*"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            run = evoq(
                "run", str(spec), "--redis-url", controller_url, "--no-progress", "--json", cwd=tmp_path
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        assert run.returncode == 0 and json.loads(run.stdout)["results"] == 12, run.stderr
        admin = redis.Redis(port=server.port, password="admin-pw")

        def allowed(user: str, *command: str) -> bool:
            return admin.execute_command("ACL", "DRYRUN", user, *command) == b"OK"

        for command in [
            ("GET", "evoq:{least}:lease"), ("SET", "evoq:{least}:lease", "x"), ("INCR", "evoq:{least}:fence"),
            ("DEL", "evoq:{least}:events"), ("XTRIM", "evoq:{least}:events", "MAXLEN", "0"),
            ("XDEL", "evoq:{least}:events", "0-1"), ("XADD", "evoq:{other}:events", "*", "e", "x"),
            ("SET", "evoq:{other}:hb:1:0", "w"), ("SMEMBERS", "evoq:experiments"), ("GET", "unrelated"),
            ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SCAN", "0"),
            ("DEBUG", "SLEEP", "0"), ("SCRIPT", "FLUSH"), ("SCRIPT", "LOAD", "return 1"), ("SHUTDOWN",),
            ("ACL", "LIST"), ("CLIENT", "KILL", "ID", "1"), ("MONITOR",),
        ]:  # fmt: skip
            assert not allowed("evoq-worker", *command), command
        for command in [
            ("XADD", "evoq:{least}:events", "*", "e", "x"), ("XRANGE", "evoq:{least}:events", "-", "+"),
            ("SET", "evoq:{least}:hb:1:0", "w", "PX", "1000"), ("DEL", "evoq:{least}:hb:1:0"),
            ("BLPOP", "rq:queue:evoq", "1"), ("HSET", "rq:job:x", "status", "started"), ("PUBLISH", "rq:pubsub:w", "x"),
        ]:  # fmt: skip
            assert allowed("evoq-worker", *command), command
        for command in [("FLUSHALL",), ("CONFIG", "SET", "save", ""), ("KEYS", "*"), ("GET", "unrelated"),
                        ("XADD", "evoq:{other}:events", "*", "e", "x"), ("ACL", "LIST")]:  # fmt: skip
            assert not allowed("evoq-controller", *command), command
    finally:
        server.stop()
