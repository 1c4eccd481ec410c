"""An NNI trial in NNI's own style: a linear classifier on scikit-learn's digits, trained epoch
by epoch with SGD, reporting the validation accuracy after every epoch and at the end.

This file is NNI trial code as NNI documents it (``nni.get_next_parameter``,
``nni.report_intermediate_result``, ``nni.report_final_result``), unchanged for evoq: evoq's
worker puts its NNI shim first on ``PYTHONPATH``. Run by NNI with ``config.yml``, by evoq with
``evoq.toml`` (``evoq run example:nni_sklearn``).
"""

import logging

import nni
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

LOG = logging.getLogger("nni_sklearn_digits")


def load_data():
    """Digits, split 75/25 and standardized."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, random_state=99, test_size=0.25
    )
    scaler = StandardScaler()
    return scaler.fit_transform(x_train), scaler.transform(x_test), y_train, y_test


def get_default_parameters():
    """Defaults for any parameter the tuner does not send."""
    return {
        "alpha": 1e-4,
        "eta0": 0.01,
        "learning_rate": "constant",
        "loss": "hinge",
        "penalty": "l2",
        "epochs": 10,
    }


def run(x_train, x_test, y_train, y_test, params):
    """Train epoch by epoch; report the test accuracy after each epoch and at the end."""
    model = SGDClassifier(
        loss=params["loss"],
        penalty=params["penalty"],
        alpha=params["alpha"],
        learning_rate=params["learning_rate"],
        eta0=params["eta0"],
        random_state=0,
    )
    classes = np.unique(y_train)
    score = 0.0
    for epoch in range(int(params["epochs"])):
        model.partial_fit(x_train, y_train, classes=classes)
        score = model.score(x_test, y_test)
        LOG.debug("epoch %d: accuracy %.4f", epoch, score)
        nni.report_intermediate_result(score)
    nni.report_final_result(score)


if __name__ == "__main__":
    try:
        received = nni.get_next_parameter()
        LOG.debug(received)
        PARAMS = get_default_parameters()
        PARAMS.update(received)
        run(*load_data(), PARAMS)
    except Exception as exception:
        LOG.exception(exception)
        raise
