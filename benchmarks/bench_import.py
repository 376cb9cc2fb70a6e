#!/usr/bin/env python3
"""How long `import kubenet_lab` takes in a fresh interpreter (target: under 0.5 s).

Each run starts a new Python process, so nothing is cached in memory; the
figure is the import alone (the interpreter's own start-up is measured
separately and subtracted). Prints a table and exits non-zero if the target is
missed.

    .venv/bin/python benchmarks/bench_import.py
"""

import statistics
import subprocess
import sys
import time

from report import report

TARGET_S = 0.5
RUNS = 7


def timed(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> int:
    bare = statistics.median(timed("pass") for _ in range(RUNS))
    full = statistics.median(timed("import kubenet_lab") for _ in range(RUNS))
    cost = full - bare
    return report([("python -c pass", bare, None), ("import kubenet_lab", cost, TARGET_S)], unit="median s")


if __name__ == "__main__":
    sys.exit(main())
