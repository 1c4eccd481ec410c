"""The parent of a command trial: it keeps the trial's whole process group from outliving it.

``python -m workers.reaper -- ARGV...`` starts ``ARGV`` in a new session (its own process group)
and waits for it. The reaper runs in a session of its own too (rq kills a work horse's whole
process group), and asks the kernel for SIGTERM when *its* parent — the RQ work horse — dies
(``PR_SET_PDEATHSIG``), so a horse killed with SIGKILL (rq's stop-job command, a cold shutdown,
the OOM killer, a lost-run cancellation) still ends the trial. On SIGTERM/SIGINT, and
when the trial's main process exits, it ends the whole group: SIGTERM, then SIGKILL after a grace
period. A trial's child processes (data loaders, launchers) therefore never keep a GPU busy after
the trial ended. It exits with the trial's exit code (128 + signal number when killed).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
GRACE_S = float(os.environ.get("EVOQ_KILL_GRACE", "5"))


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup still runs
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _default_signals() -> None:
    """In the trial process: default dispositions (a work horse ignores SIGTERM and SIGINT, and
    ignored signals are inherited across exec), so the trial can be asked to stop politely."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGRTMIN):
        signal.signal(sig, signal.SIG_DFL)


def end_group(pgid: int, grace: float = GRACE_S) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Run ``argv`` (after ``--``) in its own process group; see the module docstring."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m workers.reaper -- PROGRAM [ARG]...", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    _die_with_parent(os.getppid())
    keep = [int(fd) for fd in os.environ.get("EVOQ_PASS_FDS", "").split(",") if fd]
    try:
        child = subprocess.Popen(command, start_new_session=True, pass_fds=keep, preexec_fn=_default_signals)
    except OSError as exc:
        print(f"evoq: cannot start {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        end_group(child.pid)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = child.wait()
    end_group(child.pid, grace=0.5)  # what the trial left behind in its group
    if stopping:
        return 128 + stopping[0]
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
