"""Set-up files agree with each other: pyproject.toml, environment.yml, binder/, README, .ci/run."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}


def _conda_names(path: Path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    return {_name(d) for d in deps if isinstance(d, str)} - {"python", "pip"}


def test_environment_files_name_the_same_packages_as_pyproject():
    wanted = _pyproject_names()
    assert {"jupyterlab", "ipywidgets", "matplotlib", "networkx", "scapy", "pyyaml"} <= wanted
    assert _conda_names(ROOT / "environment.yml") == wanted
    assert _conda_names(ROOT / "binder/environment.yml") == wanted


def test_binder_pins_every_package_and_installs_the_course():
    deps = yaml.safe_load((ROOT / "binder/environment.yml").read_text())["dependencies"]
    assert all(re.fullmatch(r"[a-z0-9-]+=[0-9][0-9.]*", d) for d in deps if isinstance(d, str)), deps
    post_build = (ROOT / "binder/postBuild").read_text()
    assert post_build.startswith("#!/bin/bash") and "set -euo pipefail" in post_build
    assert "pip install --no-deps -e ." in post_build
    config = json.loads(post_build.split("<<'JSON'\n", 1)[1].split("\nJSON", 1)[0])
    assert config["ServerApp"]["default_url"] == config["LabApp"]["default_url"] == "/lab/tree/notebooks/00-start-here.ipynb"
    assert (ROOT / "binder/postBuild").stat().st_mode & 0o111
    assert (ROOT / "notebooks/00-start-here.ipynb").exists()
    # repo2docker reads binder/ alone once it exists; two config folders is an error.
    assert not (ROOT / ".binder").exists()


def test_root_environment_installs_the_package_itself():
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-e ."]


def test_readme_quick_start_is_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["python3 course.py lab", "python3 course.py test"]
    ci = (ROOT / ".ci/run").read_text().strip().splitlines()
    assert ci[-1] == "python3 course.py test"


def test_import_is_light():
    code = "import sys, kubenet_lab; print(sorted(m for m in ('scapy', 'matplotlib', 'yaml') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
