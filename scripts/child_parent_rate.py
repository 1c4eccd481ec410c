#!/usr/bin/env python3
"""How often a mutated child equals its parent: evoq's default vs NNI-exact mode.

On a NAS-Bench-201-like space (6 dimensions x 5 choices), draws ``--n`` random parents and
mutates each with evoq's mutation (per-dimension probability ``mutation_prob``), once with the
default strategy (``child_differs``) and once in NNI 2.10 mode, and prints the two rates and the
analytic NNI rate ``(1 - p * (k-1)/k) ** d``.

    python scripts/child_parent_rate.py --n 100000
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoq.proposal import mutate, trial_rng
from evoq.space import SearchSpace
from evoq.strategy import Strategy


def rate(strategy: Strategy, space: SearchSpace, n: int, seed: int) -> float:
    """The fraction of ``n`` mutations whose child equals its parent."""
    rng = random.Random(seed)
    same = 0
    for i in range(n):
        parent = space.sample(rng)
        same += mutate(dict(parent), space, strategy, trial_rng(seed, i)) == parent
    return same / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="mutations per mode")
    ap.add_argument("--dims", type=int, default=6)
    ap.add_argument("--choices", type=int, default=5)
    ap.add_argument("--mutation-prob", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    space = SearchSpace.parse({f"d{i}": list(range(args.choices)) for i in range(args.dims)})
    p = args.mutation_prob
    default = rate(Strategy(mutation_prob=p), space, args.n, args.seed)
    nni = rate(Strategy.nni(mutation_prob=p), space, args.n, args.seed)
    analytic = (1 - p * (args.choices - 1) / args.choices) ** args.dims
    print(f"space={args.dims}x{args.choices} mutation_prob={p} n={args.n}")
    print(f"child_equals_parent_default={default:.4f}")
    print(f"child_equals_parent_nni={nni:.4f}")
    print(f"child_equals_parent_nni_analytic={analytic:.4f}")


if __name__ == "__main__":
    main()
