"""A real JupyterLab server on loopback, for the tests that talk to one (HTTP or a browser).

:func:`running_lab` starts ``jupyter lab`` on a free 127.0.0.1 port with a random token, keeps
every file Jupyter writes (runtime, config, workspaces, user settings, IPython and matplotlib
caches) in a scratch folder the test owns, waits until ``/api/status`` answers, and stops the
server with SIGINT (then SIGKILL) however the test ends. Jupyter therefore never writes into the
repository or the user's home, and two tests never share a port or a token.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_environment(scratch: Path, **extra: str) -> dict[str, str]:
    """os.environ with every Jupyter, IPython and matplotlib write location moved under ``scratch``."""
    dirs = {"JUPYTER_RUNTIME_DIR": "runtime", "JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
            "IPYTHONDIR": "ipython", "MPLCONFIGDIR": "matplotlib"}
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **{k: str(scratch / v) for k, v in dirs.items()})
    env.pop("JUPYTER_PATH", None)
    env.update(extra)
    return env


@dataclass(frozen=True)
class Lab:
    """A running server: its base URL, token and log file."""

    url: str
    token: str
    log: Path

    def link(self, path: str) -> str:
        """``path`` on this server, with the token as a query parameter."""
        sep = "&" if "?" in path else "?"
        return f"{self.url}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str):
        """GET ``/api/<path>`` and decode the JSON answer."""
        with urllib.request.urlopen(self.link(f"api/{path}"), timeout=10) as response:
            return json.load(response)

    def open_unredirected(self, path: str):
        """GET ``path`` without following redirects: a 3xx raises :class:`urllib.error.HTTPError`,
        whose ``headers["Location"]`` says where the server sends a browser."""
        return urllib.request.build_opener(_NoRedirect).open(self.link(path), timeout=10)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@contextmanager
def running_lab(command: list[str], scratch: Path, *, cwd: Path, env: dict[str, str] | None = None) -> Iterator[Lab]:
    """Start ``command`` (a ``jupyter lab`` command line without network flags) and yield a :class:`Lab`.

    The flags added here bind the server to 127.0.0.1 on a free port, with a random token, no
    browser and no retrying on another port, so the URL yielded is the server's.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    command = [*command, "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0"]
    log = scratch / "lab.log"
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=cwd, env=env or scratch_environment(scratch), stdout=out,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                try:
                    lab.api("status")
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert server.poll() is None, f"JupyterLab exited:\n{log.read_text()}"
                    assert time.monotonic() < deadline, f"JupyterLab did not answer within {STARTUP_TIMEOUT_S} s"
                    time.sleep(0.5)
            yield lab
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
