"""Proposals: the next trial, as a pure function of the state and the trial index.

All randomness comes from :func:`trial_rng` — a ``random.Random`` seeded from the experiment's
seed and the trial index — so the decision for trial ``i`` can be re-derived by anyone holding
the log up to its ``TrialSubmitted`` record.

Decision order (NNI ``RegularizedEvolution``, then evoq's additions):

1. nothing once the experiment is finished or due to finish;
2. a run lost or preempted is submitted again first, same config, next attempt (no randomness);
3. nothing when ``results + in flight >= cycles``;
3a. ``reeval`` (``reeval_count`` > 1): the raced trial (see :mod:`evoq.reducer`) with the best
   mean among the incumbent and the challengers that beat its mean, with re-evaluations left to
   submit and none running, is evaluated again: a new trial index, the same config, ``parent`` =
   the raced trial (no randomness);
4. ``init``: a random config while ``population + in flight < population_size``;
5. nothing while the initial population is still coming in (``population < population_size``);
6. ``evolve``: a tournament — ``sample_size`` individuals drawn without replacement (a shuffle of
   the population, as NNI does), the best by ``optimize_mode`` wins (ties go to the youngest in
   evoq's mode, to the first drawn in NNI mode) — and the winner's config mutated: each
   dimension resampled with probability ``mutation_prob`` (with ``mutation = "neighbour"`` a
   discrete ordered dimension, with ``"local"`` any ordered one, moves to a nearby value
   instead, see :mod:`evoq.space`).

With ``child_differs`` a child identical to its parent gets one uniformly chosen dimension of the
flattened config (among those with two or more values) set to a different value (a nearby one
when that dimension moves locally). With ``dedup`` a config already
completed or running is drawn again, up to ``dedup_tries`` times; when none was unseen the last
one is proposed and the event's ``note`` says so.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from .reducer import Individual, Race, StateView, status_of
from .space import Config, SearchSpace, get_path, moves_locally, set_path
from .strategy import REEVAL_SHARE, Strategy


@dataclass(frozen=True, slots=True)
class Proposal:
    """A trial to submit; the fields of its ``TrialSubmitted`` event."""

    trial: int
    attempt: int
    config: dict[str, Any]
    parent: int | None
    phase: str
    note: str = ""


def trial_rng(seed: int, trial: int) -> random.Random:
    """The random generator for one trial's decision, derived from ``(seed, trial)`` only."""
    digest = hashlib.blake2b(f"evoq/{seed}/{trial}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def shuffle(items: list[Any], rng: random.Random) -> None:
    """Shuffle ``items`` in place, drawing exactly what ``rng.shuffle(items)`` draws.

    CPython's Fisher-Yates over ``_randbelow_with_getrandbits`` (3.11 to 3.13), written out: the
    same permutation and the same generator state after it, at about half the cost (no two
    Python calls per element; the tournament's shuffle was most of a decision's time). Written
    here, logged decisions no longer depend on how a later Python implements ``shuffle``.
    """
    getrandbits = rng.getrandbits
    for i in range(len(items) - 1, 0, -1):
        n = i + 1
        k = n.bit_length()
        j = getrandbits(k)
        while j >= n:
            j = getrandbits(k)
        items[i], items[j] = items[j], items[i]


def in_flight(state: StateView) -> int:
    """Runs submitted and not ended, plus runs awaiting a new attempt."""
    return len(state.running) + len(state.retry)


def reevals_in_flight(state: StateView) -> int:
    """Re-evaluation runs submitted and not ended, or awaiting a new attempt."""
    return sum(r.phase == "reeval" for runs in (state.running, state.retry) for r in runs.values())


def _reeval_fits(state: StateView, busy: int) -> bool:
    """Under the parallel schedule: fewer re-evaluations in flight than :data:`REEVAL_SHARE` of
    the runs in flight, the one being proposed included (at least one may)."""
    cap = max(1, int(REEVAL_SHARE * (busy + 1)))
    # the races' pending re-runs are a lower bound of the count (a race replaced while its re-runs
    # ran leaves them uncounted there): when it already reaches the cap, no pass over the runs
    if sum(r.pending for r in state.race.values()) >= cap:
        return False
    return reevals_in_flight(state) < cap


def may_submit(state: StateView, capacity: int) -> bool:
    """The capacity rule of the controller (and the simulator): submit while fewer than
    ``capacity`` runs (live workers + prefetch, or this experiment's share of a shared queue) are
    in flight.

    NNI queues its whole initial population at once; evoq does not, for any phase: an initial
    flood on a queue other experiments share (or will share) makes them wait until it drains,
    and a re-evaluation or child proposed behind it would wait as well. Each run is proposed
    when a worker is free for it (about a millisecond after a result), and ``prefetch`` queues
    runs ahead on purpose. When runs are submitted decides nothing that the log re-derives:
    proposals depend on the log only.
    """
    return state.strategy is not None and len(state.running) < capacity


def propose(state: StateView) -> Proposal | None:
    """The next trial to submit, or None when there is nothing to submit now."""
    st, space, exp = state.strategy, state.space, state.experiment
    if st is None or space is None or exp is None or status_of(state) != "running":
        return None
    if state.retry:
        r = state.retry[min(state.retry)]
        return Proposal(r.trial, r.attempt + 1, dict(r.config), r.parent, r.phase)
    busy = in_flight(state)
    if state.results + busy >= st.cycles:
        return None
    population = state.population
    trial = state.next_trial
    rng = trial_rng(exp.seed, trial)
    parallel = st.reeval_count > 1 and st.reeval_schedule == "parallel"
    size = len(population)
    # the initial population comes first; under the parallel schedule re-evaluations in flight
    # do not count against it (counted only when that can matter: they cost a pass over runs)
    if size + busy < st.population_size or (
        parallel and size < st.population_size and size + busy - reevals_in_flight(state) < st.population_size
    ):
        return _search(state, st, space, trial, "init", lambda: (space.sample(rng), None))
    race = due_reeval(state)
    if race is not None and (not parallel or _reeval_fits(state, busy)):
        return Proposal(trial, 0, dict(race.config), race.trial, "reeval")
    if len(population) < st.population_size:
        return None
    members = list(population)
    return _search(state, st, space, trial, "evolve", lambda: _breed(members, st, space, rng))


def due_reeval(state: StateView) -> Race | None:
    """The race whose re-evaluation is due: re-evaluations left to submit (under the ``serial``
    schedule: and none running), and the incumbent's own race or a mean that beats the
    incumbent's; the best mean wins (ties: the lowest trial). None if none is."""
    st = state.strategy
    if st is None or st.reeval_count <= 1 or not state.race:
        return None
    sign = 1.0 if st.maximize else -1.0
    inc = state.incumbent
    bar = -math.inf if inc is None else sign * inc.metric
    best: Race | None = None
    best_score = -math.inf
    for race in state.race.values():
        if race.tries + 1 >= st.reeval_count or (race.pending and st.reeval_schedule == "serial"):
            continue
        score = sign * race.mean
        if not math.isfinite(score):
            continue
        if score <= bar and not (inc is not None and race.trial == inc.trial):
            continue
        if best is None or score > best_score or (score == best_score and race.trial < best.trial):
            best, best_score = race, score
    return best


def _search(
    state: StateView, st: Strategy, space: SearchSpace, trial: int, phase: str, draw: Any
) -> Proposal:
    config, parent = draw()
    if not st.dedup:
        return Proposal(trial, 0, config, parent, phase)
    seen = state.seen
    for _ in range(st.dedup_tries - 1):
        if space.key(config) not in seen:
            return Proposal(trial, 0, config, parent, phase)
        config, parent = draw()
    if space.key(config) not in seen:
        return Proposal(trial, 0, config, parent, phase)
    note = f"no unseen config in {st.dedup_tries} tries (space exhausted?): proposing a duplicate"
    return Proposal(trial, 0, config, parent, phase, note)


def tournament(members: list[Individual], st: Strategy, rng: random.Random) -> Individual:
    """Draw ``sample_size`` members without replacement and return the winner.

    As NNI does: shuffle a copy of the population and take the first ``sample_size``. NNI mode
    (``child_differs`` and ``dedup`` both off) breaks ties like Python's ``max``/``min``: the first
    drawn wins; evoq's mode gives ties to the youngest (highest trial index).
    """
    sample = members[:]
    shuffle(sample, rng)
    sample = sample[: st.sample_size]
    if not st.dedup and not st.child_differs:
        pick = max if st.maximize else min
        return pick(sample, key=lambda ind: ind.metric)
    sign = 1.0 if st.maximize else -1.0
    return max(sample, key=lambda ind: (sign * ind.metric, ind.trial))


def mutate(parent: Config, space: SearchSpace, st: Strategy, rng: random.Random) -> Config:
    """Change each dimension with probability ``mutation_prob`` (NNI's rule; resampled, or moved
    to a nearby value as the strategy's ``mutation`` says), then, with ``child_differs``, make
    sure at least one dimension of the flattened config changed."""
    child = space.mutate(parent, rng, st.mutation_prob, st.mutation)
    if st.child_differs and child == parent:
        dims = space.dims(parent)
        if dims:
            path, param = rng.choice(dims)
            current = get_path(parent, path)
            near = moves_locally(param, st.mutation)
            new = param.nearby(rng, current) if near else param.different(rng, current)
            if new is not None:
                child = set_path(child, path, new)
    return child


def _breed(
    members: list[Individual], st: Strategy, space: SearchSpace, rng: random.Random
) -> tuple[Config, int]:
    winner = tournament(members, st, rng)
    return mutate(dict(winner.config), space, st, rng), winner.trial
