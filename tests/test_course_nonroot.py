"""The whole course passes nbval as an unprivileged learner, as on Binder, and chapter 10 steps aside.

Binder runs as ``jovyan``: no root, no network namespaces. This test (run as root) becomes user
``nobody`` (uid/gid 65534, no supplementary groups, via ``setpriv``) and runs
``pytest --nbval --nbval-current-env notebooks/`` with the project's own .venv interpreter when that
user can read it; when it cannot (a checkout under a private folder, as CI's may be), in a fresh
venv of the same interpreter whose site-packages are hard links to the project's (copies across
filesystems), so the packages are the tested ones either way. It works on a temporary copy of
notebooks/, scenarios/ and the kubenet_lab package, owned by that user and put first on PYTHONPATH
(the test checks the copy is what gets imported), with a fresh HOME, TMPDIR and fresh Jupyter,
IPython and matplotlib dirs: nothing of root's, and nothing written into the repository.

Chapter 10 is the one that depends on privileges: as root it runs the kernel lab live, elsewhere it
replays the lab's recording (notebooks/data/) and prints the same text, so its stored outputs must
pass unchanged. Besides nbval, the test asks the package, as that user, what the chapter's
``lab_report`` decides (``should_run_live()`` is false) and what building a ``KernelLab`` says: an
error naming root as the reason, raised before any command runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
COPIED = ("kubenet_lab", "scenarios", "notebooks")

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to become another user"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
]

STEP_ASIDE = """
import kubenet_lab
from kubenet_lab import Cluster
from kubenet_lab.kernel.lab import KernelLab
from kubenet_lab.kernel.record import SCENARIOS, should_run_live
print(kubenet_lab.__file__)
print(should_run_live())
try:
    KernelLab(Cluster.load(SCENARIOS / "three-node-vxlan.yaml")).up()
except Exception as error:
    print(type(error).__name__, error)
"""


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


# Run as the learner, a Python that starts another, as nbval does to start each notebook's kernel.
NESTED = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', 'import nbval, kubenet_lab']).returncode)"


def usable(python: object, as_nobody: list[str], **run) -> bool:
    return subprocess.run([*as_nobody, str(python), "-c", NESTED], capture_output=True, timeout=120, **run).returncode == 0


def base_interpreters() -> list[str]:
    """Interpreters of this Python's version a fresh venv can be made from: the one behind this
    environment first, then the system's (a Python installed under /root is not the learner's)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = [sys._base_executable] + [shutil.which(f"python{version}", path=p) for p in ("/usr/local/bin", "/usr/bin")]
    return list(dict.fromkeys(path for path in found if path))


def fresh_environment(top: Path, base: str) -> Path:
    """A venv at ``top/venv`` of ``base``, holding this environment's packages (hard links, so
    nothing is copied on one filesystem), world readable; its python."""
    venv = top / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    packages = Path(sysconfig.get_paths()["purelib"])
    target = venv / packages.relative_to(sys.prefix)
    shutil.rmtree(target)
    shutil.copytree(packages, target, symlinks=True, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def learner():
    """(copy of the course, environment, command prefix, python) for user nobody; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="kubenet-nonroot-") as top:
        top = Path(top)
        top.chmod(0o755)
        repo = top / "repo"
        for name in COPIED:
            shutil.copytree(ROOT / name, repo / name,
                            ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        for name in ("home", "tmp", "jupyter-config", "jupyter-data", "jupyter-runtime", "ipython", "matplotlib"):
            (top / name).mkdir()
        for path in [top, *top.rglob("*")]:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
        python = Path(sys.executable)
        env = {"PATH": f"{python.parent}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(top / "home"), "TMPDIR": str(top / "tmp"),
               "USER": "nobody", "LANG": "C.UTF-8", "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1",
               "JUPYTER_CONFIG_DIR": str(top / "jupyter-config"), "JUPYTER_DATA_DIR": str(top / "jupyter-data"),
               "JUPYTER_RUNTIME_DIR": str(top / "jupyter-runtime"), "IPYTHONDIR": str(top / "ipython"),
               "MPLCONFIGDIR": str(top / "matplotlib")}
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
        # The learner must be able to use the environment; a checkout under a private folder (/root
        # is 0700, mktemp -d makes 0700 too) cannot be, so the learner gets a fresh one then.
        # Made after the chown above: hard links share their files with the project's environment.
        for base in [None, *base_interpreters()]:
            if base is not None:
                python = fresh_environment(top, base)
                env["PATH"] = f"{python.parent}:/usr/sbin:/usr/bin:/sbin:/bin"
            if usable(python, as_nobody, cwd=repo, env=env):
                break
        else:
            pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} that uid {NOBODY} can run "
                        f"(tried {', '.join(base_interpreters())})")
        yield repo, env, as_nobody, python


def test_kernel_lab_steps_aside_and_says_why(learner):
    repo, env, as_nobody, python = learner
    result = subprocess.run([*as_nobody, str(python), "-c", STEP_ASIDE], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    module, live, error = result.stdout.strip().splitlines()
    assert Path(module).is_relative_to(repo), f"imported {module}, not the copy"
    assert live == "False"
    assert error.startswith("InvalidValue") and "needs root" in error, error


def test_whole_course_passes_nbval_without_root(learner):
    repo, env, as_nobody, python = learner
    report = repo.parent / "tmp" / "nbval.xml"
    result = subprocess.run(
        [*as_nobody, str(python), "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--nbval",
         "--nbval-current-env", f"--junitxml={report}", "-q", "notebooks/"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    summary = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR")) or "Error:" in line]
    assert result.returncode == 0, "\n".join(summary[:30]) or result.stdout[-3000:] + result.stderr[-2000:]
    cases = list(ET.parse(report).iter("testcase"))
    # nbval's junit classname is the notebook's path with dots: notebooks.01-flat-pod-network.ipynb
    ran = {case.get("classname").removeprefix("notebooks.") for case in cases}
    assert ran == {p.name for p in (repo / "notebooks").glob("*.ipynb")}
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert not failed, failed
