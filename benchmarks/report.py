"""Shared by the benchmark scripts: timers, and the table that compares figures with targets.

Each script lists (case, measured value, target or None) rows; :func:`report` prints them as an
aligned table with the ratio to the target and ok/MISSED, and returns the exit status (1 when a
target is missed). The scripts are run directly (``python benchmarks/bench_x.py``), so this file
is imported as a sibling module.
"""

from __future__ import annotations

import statistics
import time

__all__ = ["best_of", "median_of", "table", "report"]


def best_of(function, repeats: int = 3, *args):
    """(fastest of ``repeats`` runs in seconds, the last result): the noise on a shared machine only adds."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def median_of(function, runs: int) -> float:
    """Median of ``runs`` timings of ``function()``, in seconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print rows of strings aligned under ``header`` (first column left, the rest right)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def report(rows: list[tuple[str, float, float | None]], unit: str = "s", digits: int = 3) -> int:
    """Print (case, value, target) rows with ratio and verdict; return 1 if any target is missed."""
    cells, missed = [], False
    for case, value, target in rows:
        if target is None:
            cells.append((case, f"{value:.{digits}f}", "", "", ""))
            continue
        ok = value < target
        missed |= not ok
        cells.append((case, f"{value:.{digits}f}", f"{target:g}", f"{value / target:.2f}", "ok" if ok else "MISSED"))
    table(("case", unit, f"target {unit}", "ratio", "result"), cells)
    return 1 if missed else 0
