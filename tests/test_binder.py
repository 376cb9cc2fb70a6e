"""Binder builds the course from binder/ and opens JupyterLab on chapter 00.

repo2docker (what Binder runs) turns the repository into a Dockerfile. ``jupyter-repo2docker
--no-build --debug DIR`` prints that Dockerfile and stops: checked here, it contacts no Docker
daemon (this machine has none) and no network, so the test runs offline. The test renders it with
``--user-id 1000 --user-name jovyan``, Binder's user (run locally as root, repo2docker would take
the caller's uid 0), and reads what Binder would do:

* the Conda buildpack is chosen, and it installs ``binder/environment.yml`` (the only config folder
  Binder reads once binder/ exists; the root environment.yml is for local conda users);
* it does not install the repository's own package (repo2docker #1265), so ``binder/postBuild``
  does, and runs after the repository is copied in, as the notebook user who owns the copy
  (``pip install -e .`` writes kubenet_lab.egg-info there).

Which page JupyterLab opens is not in the Dockerfile: postBuild writes it to
``~/.jupyter/jupyter_server_config.json``. The nearest real check is to run postBuild as the image
would (from the repository root, with a fresh HOME, ``python`` on PATH recording the pip call
instead of installing) and then start a real JupyterLab that reads that HOME's config, and ask it
where ``/`` sends a browser. (repo2docker's own ``docker run`` path passes
``--ServerApp.default_url=/lab`` on the command line; on mybinder.org the link's ``urlpath``
or this default decides.)
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.error
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from loopback_lab import running_lab, scratch_environment

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
FIRST_PAGE = "/lab/tree/notebooks/00-start-here.ipynb"


def binder_dependencies() -> list[str]:
    return [d for d in yaml.safe_load((BINDER / "environment.yml").read_text())["dependencies"] if isinstance(d, str)]


@pytest.fixture(scope="module")
def dockerfile() -> tuple[str, str]:
    """(Dockerfile, log) as ``jupyter-repo2docker --no-build --debug`` prints them for this repository."""
    if importlib.util.find_spec("repo2docker") is None:
        pytest.skip("jupyter-repo2docker is not installed (ci extra)")
    result = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--debug", "--user-id", "1000",
                             "--user-name", "jovyan", str(ROOT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_binder_builds_from_binder_environment_yml(dockerfile):
    text, log = dockerfile
    python = next(d.split("=", 1)[1] for d in binder_dependencies() if d.startswith("python="))
    assert f"Building conda environment for python={python}" in log
    assert "COPY --chown=1000:1000 src/binder/environment.yml ${REPO_DIR}/binder/environment.yml" in text
    assert 'env update -p ${NB_PYTHON_PREFIX} --file "binder/environment.yml"' in text
    # Binder ignores the root environment.yml: nothing but binder/'s file is installed.
    assert re.findall(r'--file "([^"]+)"', text) == ["binder/environment.yml"]
    # ...and the Conda buildpack never installs the repository's own package: postBuild must.
    assert "pip install --no-cache-dir ." not in text and "setup.py" not in text


def test_binder_runs_postbuild_as_the_notebook_user_after_copying_the_repo(dockerfile):
    lines = dockerfile[0].splitlines()
    copy = lines.index("COPY --chown=1000:1000 src/ ${REPO_DIR}/")
    post_build = lines.index("RUN ./binder/postBuild")
    assert copy < post_build
    users = [line for line in lines[:post_build] if line.startswith("USER ")]
    assert users[-1] == "USER ${NB_USER}"
    assert os.access(BINDER / "postBuild", os.X_OK)


def test_postbuild_installs_the_course_and_lab_opens_on_chapter_00(tmp_path):
    """Run binder/postBuild as the image would, then a real JupyterLab with the config it wrote."""
    repo = tmp_path / "repo"
    shutil.copytree(BINDER, repo / "binder")
    shutil.copytree(ROOT / "notebooks", repo / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home, stub = tmp_path / "home", tmp_path / "bin"
    home.mkdir()
    stub.mkdir()
    calls = tmp_path / "python-calls"
    # The image's python would install kubenet_lab; this one records how it was asked to.
    (stub / "python").write_text(f'#!/bin/sh\necho "$PWD $*" >> {calls}\n')
    (stub / "python").chmod(0o755)
    env = {"PATH": f"{stub}:/usr/bin:/bin", "HOME": str(home)}
    subprocess.run([str(repo / "binder/postBuild")], cwd=repo, env=env, check=True, timeout=60)
    assert calls.read_text().splitlines() == [f"{repo} -m pip install --no-deps -e ."]

    lab_env = scratch_environment(tmp_path / "scratch", JUPYTER_CONFIG_DIR=str(home / ".jupyter"), HOME=str(home))
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={repo}", "--allow-root"]
    with running_lab(command, tmp_path / "scratch", cwd=repo, env=lab_env) as lab:
        with pytest.raises(urllib.error.HTTPError) as redirect:
            lab.open_unredirected("/")
        assert redirect.value.code == 302
        assert redirect.value.headers["Location"].split("?")[0] == FIRST_PAGE
        assert lab.api("contents/notebooks/00-start-here.ipynb")["type"] == "notebook"


def test_binder_pins_every_package_to_a_version_pyproject_allows():
    """Exact pins, so a rebuild next year installs what was tested; each inside pyproject's range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {Requirement(r).name.lower(): Requirement(r).specifier
              for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    wanted["python"] = SpecifierSet(project["requires-python"])
    pinned = {}
    for dependency in binder_dependencies():
        # conda's exact spelling is name=version (what `conda env export --no-builds` writes).
        match = re.fullmatch(r"([a-z0-9-]+)==?(\d+(?:\.\d+)+)", dependency)
        assert match, f"binder/environment.yml: {dependency!r} is not pinned to one version"
        pinned[match[1]] = Version(match[2])
    assert set(pinned) == set(wanted)
    outside = {name: str(version) for name, version in pinned.items() if version not in wanted[name]}
    assert not outside, f"binder/environment.yml pins outside pyproject.toml's ranges: {outside}"
    # python alone is pinned to a minor series (python=3.12): repo2docker picks its base environment
    # by X.Y and conda-forge's patch releases of Python are drop-in.
    assert len(pinned["python"].release) == 2
