"""Touches ``$EVOQ_TEST_MARKER`` when imported: a refused trial path must never import it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

if os.environ.get("EVOQ_TEST_MARKER"):
    Path(os.environ["EVOQ_TEST_MARKER"]).touch()


def train(config: dict[str, Any]) -> float:
    return 0.0
