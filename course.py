#!/usr/bin/env python3
"""Set up kubenet-lab in its own virtual environment, then open the course or run the tests.

    python3 course.py lab     # set up, then open JupyterLab on notebooks/00-start-here.ipynb
    python3 course.py test    # set up, then run the whole test suite (nbval included)

Only the Python standard library is used here, so this works on a fresh Debian
or Ubuntu machine that has nothing but ``python3``. The environment lives in
``.venv/`` beside this file; delete that folder to start again from scratch.

Debian and Ubuntu ship ``python3`` without ``ensurepip`` (it lives in the
``python3-venv`` package, which needs root to install). When it is missing the
environment is created without pip, and pip is bootstrapped from its own wheel
on PyPI, so no root is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("KUBENET_LAB_VENV", HERE / ".venv"))
FIRST_NOTEBOOK = "notebooks/00-start-here.ipynb"
PIP_METADATA = "https://pypi.org/pypi/pip/json"


def say(message: str) -> None:
    print(f"[kubenet-lab] {message}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def has_ensurepip() -> bool:
    if os.environ.get("KUBENET_LAB_NO_ENSUREPIP"):  # lets us test the fallback path
        return False
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        return False
    return True


def bootstrap_pip_from_pypi(python: Path) -> None:
    """Install pip into a pip-less environment from pip's own wheel on PyPI."""
    with urllib.request.urlopen(PIP_METADATA, timeout=60) as response:
        release = json.load(response)
    wheel = next(f for f in release["urls"] if f["packagetype"] == "bdist_wheel")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        say(f"ensurepip is missing; fetching {wheel['filename']} from PyPI")
        # Mirrors may give the file's address relative to the metadata's.
        with urllib.request.urlopen(urllib.parse.urljoin(PIP_METADATA, wheel["url"]), timeout=120) as response:
            data = response.read()
        if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
            sys.exit("[kubenet-lab] the downloaded pip wheel does not match PyPI's checksum")
        path.write_bytes(data)
        # A pip wheel is importable as it is: run pip from the wheel to install itself.
        run([str(python), f"{path}/pip", "install", "--quiet", "--no-index", str(path)])


def run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=HERE)
    if result.returncode != 0:
        sys.exit(f"[kubenet-lab] failed ({result.returncode}): {' '.join(command)}")


def ensure_environment() -> Path:
    """Create .venv if needed and install kubenet-lab with its test and ci extras into it.

    The install is repeated only when pyproject.toml changes, so later runs start at once.
    """
    python = venv_python()
    if not python.exists():
        say(f"creating a virtual environment in {VENV}")
        with_pip = has_ensurepip()
        venv.EnvBuilder(with_pip=with_pip, clear=True).create(VENV)
        if not with_pip:
            bootstrap_pip_from_pypi(python)
    stamp = VENV / ".kubenet-lab-installed"
    wanted = hashlib.sha256((HERE / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        say("installing kubenet-lab and its dependencies (a few minutes the first time)")
        run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        run([str(python), "-m", "pip", "install", "--quiet", "-e", ".[test,ci]"])
        stamp.write_text(wanted)
    return python


def lab_command(python: str, extra: list[str]) -> list[str]:
    """The JupyterLab command: the repository as the root, chapter 00 as the first page."""
    command = [python, "-m", "jupyter", "lab", f"--ServerApp.root_dir={HERE}",
               f"--LabApp.default_url=/lab/tree/{FIRST_NOTEBOOK}", *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        say("running as root (a container or a lab VM?): passing --allow-root to JupyterLab")
        command.append("--allow-root")
    return command


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("lab", "test"):
        sys.exit(__doc__)
    python = str(ensure_environment())
    action, extra = argv[0], argv[1:]
    if action == "lab":
        say(f"opening JupyterLab on {FIRST_NOTEBOOK} (Ctrl-C to stop)")
        command = lab_command(python, extra)
    else:
        command = [python, "-m", "pytest", *extra]
    os.chdir(HERE)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
