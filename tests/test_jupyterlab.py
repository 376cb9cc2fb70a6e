"""The README's `python3 course.py lab` really starts JupyterLab on chapter 00.

The test builds the very command course.py runs (without the set-up step, which
this environment has already done), starts the server on loopback, asks it over
HTTP where it sends a browser and whether it serves the notebook, and stops it.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "kubenet-lab-test"


def load_course():
    spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def lab(tmp_path):
    port = free_port()
    command = load_course().lab_command(sys.executable, [
        "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        f"--IdentityProvider.token={TOKEN}", "--ServerApp.port_retries=0"])
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    log = open(tmp_path / "lab.log", "wb")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, (tmp_path / "lab.log").read_text()
                assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
                time.sleep(0.5)
        yield base
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_lab_opens_on_chapter_00(lab):
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(f"{lab}/?token={TOKEN}", timeout=10)
    assert redirect.value.code == 302
    assert redirect.value.headers["Location"].startswith("/lab/tree/notebooks/00-start-here.ipynb")
    page = urllib.request.urlopen(f"{lab}/lab/tree/notebooks/00-start-here.ipynb?token={TOKEN}", timeout=10)
    assert page.status == 200 and b"JupyterLab" in page.read()
    # The repository is the root, so the whole course (and scenarios/) is in the file browser.
    model = json.load(urllib.request.urlopen(f"{lab}/api/contents/notebooks/00-start-here.ipynb?token={TOKEN}", timeout=10))
    assert model["type"] == "notebook" and model["content"]["cells"][0]["source"].startswith("# 00 · Start here")
    listing = json.load(urllib.request.urlopen(f"{lab}/api/contents?token={TOKEN}", timeout=10))
    assert {"notebooks", "scenarios"} <= {item["name"] for item in listing["content"]}
