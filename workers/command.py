"""Running a command trial inside the RQ work horse: a child process, its reports, its log.

The command (already admitted by the worker's allowlist) runs under :mod:`workers.reaper` in its
own process group, in its folder inside the worker's trial directory (``EVOQ_TRIAL_DIR``, default
the worker's working directory). It gets:

* the config as JSON in ``EVOQ_CONFIG`` and in the file ``EVOQ_CONFIG_FILE``;
* ``EVOQ_REPORT_FD``, a pipe for its reports (:mod:`evoq.trial`, or NNI's API through the shim);
* ``EVOQ_TRIAL_ID``, ``EVOQ_EXPERIMENT``, ``EVOQ_TRIAL``, ``EVOQ_ATTEMPT``;
* ``PYTHONPATH`` with evoq's NNI shim first (``import nni`` works without NNI);
* the worker's environment otherwise, *without* the Redis URL (a trial needs no credentials).

A program named ``python`` or ``python3`` is the worker's own interpreter (``sys.executable``), so
a trial runs in the environment the worker runs in; give an absolute path for another one.

stdout and stderr go to a per-trial log file (``EVOQ_TRIAL_LOG_DIR``, default
``~/.cache/evoq/trials``), at most :data:`LOG_BYTES` per file with one rotated backup; its last
lines are the failure message when the command exits non-zero or reports nothing. When the job
is interrupted (timeout, worker shutdown, an exception) the whole process group is ended.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoq.metric import InvalidMetricError, parse_metric
from evoq.trialspec import CommandTrial, TrialSpecError

SHIM_DIR = Path(__file__).resolve().parent / "nni_shim"
LOG_BYTES = 10 * 1024 * 1024
"""Bytes of output kept per trial log file (one rotated backup besides)."""
TAIL_LINES = 20
MAX_REPORT_LINE = 65536
SECRET_VARS = ("RQ_REDIS_URL", "REDIS_URL")
PYTHON_NAMES = ("python", "python3")
"""A command whose program is one of these runs with the worker's own interpreter."""


class CommandRefused(Exception):
    """The command cannot be started here (its folder, its placeholders): a ``refused`` run."""


@dataclass
class Reports:
    """What the trial reported through its pipe."""

    final: Any = None
    has_final: bool = False
    bad_lines: int = 0
    steps: int = 0
    on_intermediate: Callable[[int, float], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, line: bytes) -> None:
        """Handle one line from the pipe (malformed lines are counted and ignored)."""
        try:
            message = json.loads(line)
        except ValueError:
            self.bad_lines += 1
            return
        if not isinstance(message, dict):
            self.bad_lines += 1
            return
        with self._lock:
            if "final" in message:
                self.final, self.has_final = message["final"], True
            elif "intermediate" in message:
                try:
                    value = parse_metric(message["intermediate"])
                except InvalidMetricError:
                    self.bad_lines += 1
                    return
                step = message.get("step")
                step = step if type(step) is int and 0 <= step < 2**62 else self.steps
                self.steps += 1
                if self.on_intermediate is not None:
                    self.on_intermediate(step, value)


class TrialLog:
    """A bounded, rotated log file of a trial's output, with its last lines kept in memory."""

    def __init__(self, path: Path, limit: int = LOG_BYTES) -> None:
        self.path = path
        self.limit = limit
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._size = self._file.tell()

    def write(self, chunk: bytes) -> None:
        if self._size + len(chunk) > self.limit:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._file = open(self.path, "ab")  # noqa: SIM115
            self._size = 0
        self._file.write(chunk)
        self._file.flush()
        self._size += len(chunk)
        text = chunk.decode(errors="replace").rstrip("\n")
        if text.strip():
            self.tail.extend(text.splitlines()[-TAIL_LINES:])

    def close(self) -> None:
        self._file.close()

    def last_lines(self) -> str:
        return "\n".join(self.tail)


def trial_dir() -> Path:
    """The folder command trials run in (their ``cwd`` is relative to it)."""
    return Path(os.environ.get("EVOQ_TRIAL_DIR") or os.getcwd()).resolve()


def log_dir() -> Path:
    """Where trial output goes."""
    return Path(os.environ.get("EVOQ_TRIAL_LOG_DIR") or Path.home() / ".cache" / "evoq" / "trials")


def _pump(stream: Any, sink: Callable[[bytes], None]) -> None:
    for chunk in iter(lambda: stream.readline(MAX_REPORT_LINE), b""):
        sink(chunk)


def run_command(
    trial: CommandTrial,
    config: Mapping[str, Any],
    *,
    experiment: str,
    index: int,
    attempt: int,
    on_intermediate: Callable[[int, float], None],
) -> tuple[str, Any]:
    """Run one command trial: ``("completed", metric)`` or ``(failure kind, message)``.

    Exceptions that stop the job (timeouts, imminent shutdown) propagate after the trial's process
    group was ended.
    """
    base = trial_dir()
    cwd = (base / trial.cwd).resolve()
    if not cwd.is_relative_to(base) or not cwd.is_dir():
        return (
            "refused",
            f"command folder {trial.cwd!r} is not a folder inside this worker's trial directory {str(base)!r}",
        )
    try:
        as_json = json.dumps(config)
        argv = trial.argv(config)
    except TrialSpecError as exc:
        return "refused", str(exc)
    except (TypeError, ValueError) as exc:  # bytes, msgpack extension types: not JSON data
        return "refused", f"the config is not JSON data ({str(exc)[:120]})"
    if argv[0] in PYTHON_NAMES:
        argv[0] = sys.executable  # the worker's own environment, whatever PATH says
    run_id = f"{experiment}-{index}-{attempt}"
    tmp = Path(tempfile.mkdtemp(prefix=f"evoq-{run_id}-"))
    config_file = tmp / "config.json"
    config_file.write_text(as_json)
    read_fd, write_fd = os.pipe()
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env.update(
        EVOQ_CONFIG=as_json,
        EVOQ_CONFIG_FILE=str(config_file),
        EVOQ_REPORT_FD=str(write_fd),
        EVOQ_PASS_FDS=str(write_fd),
        EVOQ_TRIAL_ID=run_id,
        EVOQ_EXPERIMENT=experiment,
        EVOQ_TRIAL=str(index),
        EVOQ_ATTEMPT=str(attempt),
        PYTHONPATH=os.pathsep.join(p for p in (str(SHIM_DIR), env.get("PYTHONPATH", "")) if p),
    )
    out = TrialLog(log_dir() / f"{run_id}.log")
    reports = Reports(on_intermediate=on_intermediate)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.reaper", "--", *argv],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
            start_new_session=True,  # rq kills the horse's whole group: the reaper must outlive it
        )  # fmt: skip
    except OSError as exc:  # E2BIG for a config larger than the environment may hold, ...
        os.close(read_fd)
        os.close(write_fd)
        out.close()
        with contextlib.suppress(OSError):
            config_file.unlink()
            tmp.rmdir()
        return "refused", f"cannot start the trial's reaper: {exc}"
    os.close(write_fd)  # the child holds its end: EOF on read_fd when every holder has exited
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out.write), daemon=True),
        threading.Thread(target=_pump, args=(os.fdopen(read_fd, "rb"), reports.take), daemon=True),
    ]
    for t in pumps:
        t.start()
    try:
        code = proc.wait()
    except BaseException:
        # a timeout, a shutdown, anything: the reaper ends the group before the job ends
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        raise
    finally:
        for t in pumps:
            t.join(timeout=5)
        out.close()
        with contextlib.suppress(OSError):
            config_file.unlink()
            tmp.rmdir()
    tail = out.last_lines()
    where = f" (log: {out.path})"
    if code == 127 and "evoq: cannot start" in tail:
        return "refused", tail.splitlines()[-1] + where
    if code != 0:
        return "error", f"command exited with status {code}{where}\n{tail}"
    if not reports.has_final:
        return "error", (
            "command exited 0 but reported no result (call nni.report_final_result(x) or "
            f"evoq.trial.report(x)){where}\n{tail}"
        )
    try:
        return "completed", parse_metric(reports.final)
    except InvalidMetricError as exc:
        return "invalid_metric", f"the command {exc}{where}"
