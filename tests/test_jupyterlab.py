"""The README's `python3 course.py lab` really starts JupyterLab on chapter 00.

The test builds the very command course.py runs (without the set-up step, which
this environment has already done), starts the server on loopback, asks it over
HTTP where it sends a browser and whether it serves the notebook, and stops it.
"""

import importlib.util
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from loopback_lab import running_lab

ROOT = Path(__file__).resolve().parent.parent


def load_course():
    spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def lab(tmp_path):
    with running_lab(load_course().lab_command(sys.executable, []), tmp_path, cwd=ROOT) as server:
        yield server


def test_lab_opens_on_chapter_00(lab):
    with pytest.raises(urllib.error.HTTPError) as redirect:
        lab.open_unredirected("/")
    assert redirect.value.code == 302
    assert redirect.value.headers["Location"].startswith("/lab/tree/notebooks/00-start-here.ipynb")
    page = urllib.request.urlopen(lab.link("lab/tree/notebooks/00-start-here.ipynb"), timeout=10)
    assert page.status == 200 and b"JupyterLab" in page.read()
    # The repository is the root, so the whole course (and scenarios/) is in the file browser.
    model = lab.api("contents/notebooks/00-start-here.ipynb")
    assert model["type"] == "notebook" and model["content"]["cells"][0]["source"].startswith("# 00 · Start here")
    listing = lab.api("contents")
    assert {"notebooks", "scenarios"} <= {item["name"] for item in listing["content"]}
