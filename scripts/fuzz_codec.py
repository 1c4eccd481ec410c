#!/usr/bin/env python3
"""Fuzz evoq's decoder and file-log reader: only evoq's typed errors may come out.

Feeds ``--inputs`` inputs, a third each of: random bytes; valid records of a realistic log with
bit flips, truncations, insertions and overwrites; structured garbage (msgpack arrays with a known
event tag, any version and random fields). Every 100th input is also written as a whole log file
(a real log with the damage applied) and replayed. Prints counts by outcome and exits 1 if any
other exception escaped (printing the input that caused it).

    python scripts/fuzz_codec.py --inputs 100000 --seed 0
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoq.codec import CodecError, decode, encode
from evoq.filelog import FileLog, TornTailWarning
from evoq.log import replay_log
from evoq.reducer import InvalidLogError
from evoq.strategy import Strategy
from tests.sim import simulate

TAGS = [
    "experiment_created",
    "trial_submitted",
    "trial_started",
    "trial_completed",
    "trial_failed",
    "experiment_finished",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Apply 1-4 random byte-level damages."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def garbage_value(rng: random.Random, depth: int = 0) -> object:
    """A random msgpack-able value (nested at most 3 deep)."""
    kind = rng.randrange(9 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 3:
        return rng.choice([float("nan"), float("inf"), -0.0, rng.uniform(-1e9, 1e9)])
    if kind == 4:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(6)))
    if kind == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
    if kind == 6:
        return rng.choice(["init", "evolve", "error", "lost", "completed", "x"])
    if kind == 7:
        return [garbage_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(garbage_value(rng, 3)): garbage_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    events = simulate(
        random.Random(args.seed), Strategy(population_size=6, sample_size=2, cycles=30), steps=300
    )
    records = [encode(e) for e in events]
    outcomes: Counter[str] = Counter()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.evoqlog"
        FileLog(path).append(records)
        good_file = path.read_bytes()
        for i in range(args.inputs):
            kind = i % 3
            if kind == 0:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
            elif kind == 1:
                data = mutate(rng.choice(records), rng)
            else:
                fields = [garbage_value(rng) for _ in range(rng.randrange(9))]
                data = msgpack.packb([rng.choice(TAGS), rng.choice([1, 1, 1, 0, 2, -1, 99]), *fields])
            try:
                decode(data)
                outcomes["decoded"] += 1
            except CodecError as exc:
                outcomes[type(exc).__name__] += 1
            except Exception as exc:
                print(f"UNTYPED {type(exc).__name__}: {exc}\ninput: {data!r}")
                return 1
            if i % 100 == 0:
                path.write_bytes(mutate(good_file, rng))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", TornTailWarning)
                    try:
                        replay_log(FileLog(path))
                        outcomes["file: replayed"] += 1
                    except (CodecError, InvalidLogError) as exc:
                        outcomes[f"file: {type(exc).__name__}"] += 1
                    except Exception as exc:
                        print(f"UNTYPED from the file reader {type(exc).__name__}: {exc}")
                        return 1
    dt = time.perf_counter() - t0
    for k, v in sorted(outcomes.items()):
        print(f"{k}={v}")
    print(f"inputs={args.inputs} untyped=0 seconds={dt:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
