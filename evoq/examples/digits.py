"""A small neural network on scikit-learn's digits: the trial function of ``example:digits``.

Each trial trains on one core: the embedded default runs one worker thread per core, and numpy's
BLAS threads on top of those would only fight over the same cores (the limit is set once, for
the whole process, when this module is imported).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

from threadpoolctl import threadpool_limits

threadpool_limits(limits=1)


@functools.cache
def _data() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y))


def train(config: dict[str, Any]) -> float:
    """Train an MLP with ``config`` and return its accuracy on the held-out quarter of the data."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, x_val, y_train, y_val = _data()
    model = MLPClassifier(
        hidden_layer_sizes=(int(config["width"]),) * int(config["layers"]),
        activation=config["activation"],
        learning_rate_init=float(config["learning_rate"]),
        alpha=float(config["l2"]),
        batch_size=int(config["batch_size"]),
        max_iter=30,
        random_state=0,
    )
    # a process-wide filter: catch_warnings() is not thread-safe, and embedded workers are threads
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    model.fit(x_train, y_train)
    return float(model.score(x_val, y_val))
