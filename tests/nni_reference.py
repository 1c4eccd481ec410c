"""A small reference implementation of NNI 2.10's ``RegularizedEvolution`` logic.

Ported from ``nni/retiarii/strategy/evolution.py`` (NNI 2.10) with the model plumbing removed and
the global ``random`` module replaced by an injected generator, so that, fed the same results in
the same order and the same per-trial generator, it must make exactly the decisions evoq makes
in NNI mode (``Strategy.nni()``).
"""

from __future__ import annotations

import collections
import dataclasses
import random
from typing import Any


@dataclasses.dataclass
class Individual:
    x: dict[str, Any]
    y: float


class NNIRegularizedEvolution:
    def __init__(self, search_space, optimize_mode="maximize", population_size=100, sample_size=25,
                 cycles=20000, mutation_prob=0.05, on_failure="ignore"):  # fmt: skip
        self.search_space = search_space
        self.optimize_mode = optimize_mode
        self.population_size = population_size
        self.sample_size = sample_size
        self.cycles = cycles
        self.mutation_prob = mutation_prob
        self.on_failure = on_failure
        self._worst = float("-inf") if optimize_mode == "maximize" else float("inf")
        self._success_count = 0
        self._population: collections.deque[Individual] = collections.deque()
        self._running_models: list[tuple[int, dict[str, Any]]] = []

    # --- NNI's methods, verbatim but for the injected rng -----------------------------------
    def random(self, rng: random.Random) -> dict[str, Any]:
        return {k: rng.choice(v) for k, v in self.search_space.items()}

    def mutate(self, parent: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        child = {}
        for k, v in parent.items():
            if rng.uniform(0, 1) < self.mutation_prob:
                # NOTE: we do not exclude the original choice here for simplicity,
                # which is slightly different from the original paper.
                child[k] = rng.choice(self.search_space[k])
            else:
                child[k] = v
        return child

    def best_parent(self, rng: random.Random) -> dict[str, Any]:
        samples = [p for p in self._population]  # copy population
        rng.shuffle(samples)
        samples = list(samples)[: self.sample_size]
        if self.optimize_mode == "maximize":
            parent = max(samples, key=lambda sample: sample.y)
        else:
            parent = min(samples, key=lambda sample: sample.y)
        return parent.x

    # --- the decisions of NNI's run() loop, one at a time -----------------------------------
    def next_config(self, trial: int, rng: random.Random) -> dict[str, Any] | None:
        """What NNI's loop submits next (None: it would wait for results)."""
        if len(self._population) + len(self._running_models) < self.population_size:
            config = self.random(rng)
        elif len(self._population) < self.population_size:
            return None  # initial population still running
        elif self._success_count + len(self._running_models) < self.cycles:
            config = self.mutate(self.best_parent(rng), rng)
        else:
            return None
        self._running_models.append((trial, config))
        return config

    def on_result(self, trial: int, metric: float | None) -> None:
        """A trial ended: a metric, or None for a failure (NNI's status Failed)."""
        config = next(c for t, c in self._running_models if t == trial)
        if metric is None and self.on_failure == "ignore":
            self._running_models = [(t, c) for t, c in self._running_models if t != trial]
            return
        individual = Individual(config, self._worst if metric is None else metric)
        self._population.append(individual)
        if len(self._population) > self.population_size:
            self._population.popleft()
        self._success_count += 1
        self._running_models = [(t, c) for t, c in self._running_models if t != trial]
