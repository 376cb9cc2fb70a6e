#!/usr/bin/env python3
"""How long the whole course takes to run, notebook by notebook (target: under 90 s in all).

Each notebook in notebooks/ (found by glob, so new chapters count at once) is executed top to
bottom with nbclient in a fresh ``python3`` kernel started for it, from the notebooks/ folder, as
"Restart Kernel and Run All Cells" would; kernel start-up is part of the figure. Nothing is saved.
The table gives each notebook's seconds and the total against the issue's target for this 2-core
machine; the exit status is 1 if the target is missed or a notebook fails.

Chapter 10 replays the kernel lab's recording (``KUBENET_LAB_LIVE=0``), as a learner without root
does; ``--live`` lets it build the lab when run as root (benchmarks/bench_kernel_lab.py measures
that on its own).

    .venv/bin/python benchmarks/bench_course.py [--live] [notebooks/NN-x.ipynb ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from report import report

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TARGET_S = 90.0
CELL_TIMEOUT_S = 600


def run_notebook(path: Path) -> float:
    """Seconds to execute ``path`` in a fresh kernel, start-up included."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    client.execute()
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live", action="store_true", help="let chapter 10 run the kernel lab live when root")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    args = parser.parse_args(argv)
    if not args.live:
        os.environ["KUBENET_LAB_LIVE"] = "0"  # inherited by each kernel
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    rows, failed = [], []
    for path in paths:
        try:
            seconds = run_notebook(path)
        except CellExecutionError as error:
            failed.append(path.name)
            print(f"{path.name}: {str(error).splitlines()[0] if str(error) else 'a cell failed'}", file=sys.stderr)
            continue
        rows.append((path.name, seconds, None))
    total = sum(seconds for _, seconds, _ in rows)
    target = TARGET_S if not args.notebooks else None  # the target is for the whole course
    status = report([*rows, (f"whole course ({len(rows)} notebooks)", total, target)], unit="s", digits=1)
    if failed:
        print(f"failed, so not timed: {', '.join(failed)}")
    return 1 if failed else status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
