#!/usr/bin/env python3
"""Execute course notebooks top to bottom in a fresh kernel and store their outputs.

    .venv/bin/python tools/refresh_notebooks.py notebooks/01-flat-pod-network.ipynb [...]
    .venv/bin/python tools/refresh_notebooks.py            # every notebook in notebooks/

nbval compares the stored outputs with a fresh run, so run this after editing
a notebook or changing what the package prints. It uses the same environment
settings as the test run (SOURCE_DATE_EPOCH=0 for reproducible figures) and
stops at the first cell that raises.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def refresh(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    started = time.perf_counter()
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(f"{path}: {refresh(path):.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
