"""Jobs that name other code, carry pickles or callbacks are refused by a real evoq worker."""

from __future__ import annotations

import os
import time

import pytest
from rq import Callback, Queue
from rq.job import Job, JobStatus

from ..cluster import RedisServer, Worker, wait_for

SERIALIZER = "workers.serializer.MsgpackSerializer"


class Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    marker = tmp_path_factory.mktemp("marker") / "callback-ran"
    worker = Worker(server.url, f"hostile-{time.monotonic_ns()}", EVOQ_TEST_MARKER=str(marker))
    server.marker = marker
    yield server
    worker.stop()
    server.stop()


def ended(server, job_id: str) -> Job:
    def done():
        job = Job.fetch(job_id, connection=server.client(), serializer=SERIALIZER)
        return job if job.get_status() in (JobStatus.FAILED, JobStatus.FINISHED) else None

    return wait_for(done, timeout=20)


def exc_text(job: Job) -> str:
    result = job.latest_result()
    return result.exc_string or "" if result is not None else ""


def test_job_naming_another_function_is_refused(cluster, tmp_path):
    marker = tmp_path / "pwned"
    q = Queue("evoq", connection=cluster.client(), serializer=SERIALIZER)
    job = q.enqueue_call("os.system", args=(f"touch {marker}",), job_id="hostile-func")
    j = ended(cluster, job.id)
    assert j.get_status() == JobStatus.FAILED and "not allowed" in exc_text(j)
    assert not marker.exists()


def test_pickled_payload_is_refused(cluster, tmp_path):
    marker = tmp_path / "pwned"
    q = Queue("evoq", connection=cluster.client())  # RQ's default pickle serializer
    q.enqueue_call("workers.trial.run_trial", args=(Exploit(str(marker)),), job_id="hostile-pickle")
    time.sleep(0.1)
    assert not marker.exists()  # pickling it here did not run it either
    j = wait_for(
        lambda: cluster.client().hget("rq:job:hostile-pickle", "status") in (b"failed", b"finished"),
        timeout=20,
    )
    assert j
    assert cluster.client().hget("rq:job:hostile-pickle", "status") == b"failed"
    assert not marker.exists()


def test_job_with_callbacks_is_refused_and_callbacks_never_run(cluster):
    q = Queue("evoq", connection=cluster.client(), serializer=SERIALIZER)
    job = q.enqueue_call(
        "workers.trial.run_trial",
        args=({"v": 1},),
        job_id="hostile-callback",
        on_success=Callback("tests.trials.mark"),
        on_failure=Callback("tests.trials.mark"),
    )
    j = ended(cluster, job.id)
    assert j.get_status() == JobStatus.FAILED and "RQ features evoq does not use" in exc_text(j)
    time.sleep(0.5)
    assert not cluster.marker.exists()
