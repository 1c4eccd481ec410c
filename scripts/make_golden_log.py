#!/usr/bin/env python3
"""Write a golden event log of the current schema version, with the state it must replay to.

Files are named ``schema<S>-file<F>``: event schema version S in file format F. The golden logs
under ``tests/golden/`` are kept forever: every future evoq must read each of
them (through upcasters) and rebuild exactly the recorded state. Run this once per new schema
version, never to overwrite an existing version's files.

    python scripts/make_golden_log.py --out tests/golden
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoq.codec import SCHEMA_VERSION, encode
from evoq.filelog import MAGIC, FileLog
from evoq.log import replay_log
from evoq.report import summary
from evoq.strategy import Strategy
from tests.sim import simulate

FILE_FORMAT = int(MAGIC[-1:].decode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("tests/golden"), help="directory (default tests/golden)")
    ap.add_argument("--force", action="store_true", help="overwrite existing files of this version")
    args = ap.parse_args()
    stem = f"schema{SCHEMA_VERSION}-file{FILE_FORMAT}"
    log_path = args.out / f"{stem}.evoqlog"
    state_path = args.out / f"{stem}.state.json"
    if (log_path.exists() or state_path.exists()) and not args.force:
        sys.exit(f"{log_path} exists: golden logs are never regenerated (use --force only before a release)")
    # every event type and enum value of the current schema should appear at least once
    strategy = Strategy(population_size=8, sample_size=3, cycles=30, on_failure="worst", max_attempts=3)
    events = simulate(random.Random(7), strategy, seed=11, steps=600, progress_rate=0.1, extend_to=40)
    args.out.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    FileLog(log_path).append([encode(e) for e in events])
    state = replay_log(FileLog(log_path)).freeze()
    state_path.write_text(json.dumps(summary(state), indent=1, sort_keys=True) + "\n")
    print(f"wrote {log_path} ({len(events)} events) and {state_path}: status={state.status}")


if __name__ == "__main__":
    main()
